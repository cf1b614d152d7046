"""A base install (`pip install .`, no extras) imports and runs the default experiment: the optional
packages (onnx, ONNX Runtime, OpenVINO, NNCF, torchao, onnx2torch) are made unimportable in a child
process, as on a machine without them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

OPTIONAL = ("onnx", "onnxruntime", "onnxscript", "openvino", "nncf", "torchao", "onnx2torch", "timm", "torchvision")
BLOCK = f"import sys\nfor name in {OPTIONAL!r}:\n    sys.modules[name] = None  # importing it now fails\n"


def _child(code: str, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EXPERIMENT_ROOT": str(tmp_path / "runs")}
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)


def test_the_library_imports_without_the_optional_packages(tmp_path):
    done = _child("""
        import quantlens
        import quantlens.cli, quantlens.experiments.runner, quantlens.experiments.export  # noqa: F401
        assert callable(quantlens.evaluate) and callable(quantlens.load_onnx)
        print("ok")
    """, tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.slow
def test_the_default_experiment_runs_without_the_optional_packages(tmp_path):
    done = _child("""
        import sys
        from quantlens.cli import main
        sys.argv = ["quantlens", "run"]
        main()
    """, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "run record:" in done.stdout and any((tmp_path / "runs").iterdir())
