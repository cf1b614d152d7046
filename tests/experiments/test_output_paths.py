"""Run folders stay inside the run root: names that would escape it, or break the file system, are refused."""

from __future__ import annotations

import pytest

from quantlens.errors import ConfigError
from quantlens.experiments.record import RunRecord
from quantlens.experiments.spec import spec_from_dict

ESCAPES = ["../../../../x", "../x", "/abs/x", "a/b", "..", ".hidden", "x\\..\\y", "~/x", "a\nb"]


@pytest.mark.parametrize("name", ESCAPES)
@pytest.mark.parametrize("field", ["name", "output.name"])
def test_names_that_leave_the_run_root_refused(name, field):
    values = {"name": name} if field == "name" else {"output": {"name": name}}
    with pytest.raises(ConfigError, match=rf"^config: {field}: .*(not a run name)"):
        spec_from_dict(values)


@pytest.mark.parametrize("name", ["x" * 101, "x" * 300, "é" * 200])
def test_overlong_names_refused(name):
    with pytest.raises(ConfigError, match="output.name: .*at most 100"):
        spec_from_dict({"output": {"name": name}})


@pytest.mark.parametrize("name", ["a\x00b", "\x00", "run\x00/../x"])
def test_nul_in_names_refused(name):
    with pytest.raises(ConfigError, match="output.name: a string holds a NUL"):
        spec_from_dict({"output": {"name": name}})


@pytest.mark.parametrize("name", ["resnet20", "a.b-c_d", "9x"])
def test_ordinary_names_make_one_folder_inside_the_root(tmp_path, name):
    spec = spec_from_dict({"output": {"name": name, "root": str(tmp_path / "runs")}})
    with RunRecord(tmp_path / "runs", spec.output.name) as record:
        record.write_text("x.txt", "x")
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.parent == tmp_path / "runs" and name in folder.name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


@pytest.mark.parametrize("args", [("--name", "../../escaped"), ("--name", "x" * 300), ("--name", "")])
def test_cli_names_refused_in_one_line_and_nothing_written(cli, tmp_path, args):
    result = cli("eval", "--model", "compact_cnn", "--data", "digits", "--out", tmp_path / "runs", *args)
    assert result.code == 2 and len(result.error_lines) == 1, result.err
    assert "name" in result.error_lines[0]
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent / "escaped").exists()
