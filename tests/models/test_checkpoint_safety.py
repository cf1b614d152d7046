"""Untrusted weights and sidecars are refused with one line naming the file and the tensor or key:
odd tensors, malformed sidecars, zip bombs, and the `--check` dry run that reads only headers."""

from __future__ import annotations

import json
import struct
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from quantlens.archives import check_archive_sizes
from quantlens.data.transforms import ResizeRule
from quantlens.errors import CheckpointError, DataError
from quantlens.models.check import check_weights_file
from quantlens.models.checkpoints import load_weights, read_state_dict
from quantlens.models.sidecar import CheckpointSidecar

BOMB_BYTES = 128 << 20  # over the 64 MiB floor of the ratio rule; deflates (level 1) to ~0.6 MB


def _net() -> nn.Module:  # keys 0.weight (4, 1, 3, 3), ..., 1.num_batches_tracked (int64), 3.weight (2, 144)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.fixture
def no_isfinite(monkeypatch):
    """Fail the test if anything asks for values through torch.isfinite."""
    def boom(*_):
        raise AssertionError("torch.isfinite was called")
    monkeypatch.setattr(torch, "isfinite", boom)


# --- 1. tensors that are not dense float data, or of the wrong kind ----------------------------

def _sparse_out_of_bounds() -> torch.Tensor:
    # index 99 in a 36-element tensor: torch.load does not validate sparse indices unless asked to
    idx = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 99, 0, 0]])
    return torch.sparse_coo_tensor(idx, torch.ones(4), (4, 1, 3, 3), check_invariants=False)


@pytest.mark.parametrize(("make", "why"), [
    (lambda w: w.to_sparse(), "sparse_coo"),
    (lambda w: w.reshape(4, 9).to_sparse_csr(), "sparse_csr"),
    (lambda w: _sparse_out_of_bounds(), "sparse_coo"),
    (lambda w: torch.empty_like(w, device="meta"), "meta: a shape without data"),
    (lambda w: torch.quantize_per_tensor(w, 0.1, 0, torch.qint8), "quantized qint8"),
    (lambda w: torch.nested.nested_tensor([w.flatten(), w.flatten()[:5]]), "nested"),  # has no .shape
], ids=["coo", "csr", "coo-out-of-bounds", "meta", "quantized", "nested"])
@pytest.mark.filterwarnings("ignore::UserWarning")  # beta sparse CSR, deprecated quantized and nested tensors
def test_storage_kinds_refused_before_values_are_read(tmp_path, no_isfinite, make, why):
    sd = _net().state_dict()
    sd["0.weight"] = make(sd["0.weight"])
    path = tmp_path / "w.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as exc:
        load_weights(_net(), path)
    assert f"0.weight ({why})" in _one_line(exc) and str(path) in str(exc.value)


@pytest.mark.parametrize(("key", "value", "shown"), [
    ("0.weight", torch.ones(4, 1, 3, 3, dtype=torch.complex64), "0.weight complex64 vs model float32"),
    ("0.weight", torch.ones(4, 1, 3, 3, dtype=torch.int32), "0.weight int32 vs model float32"),
    ("3.bias", torch.ones(2, dtype=torch.bool), "3.bias bool vs model float32"),
    ("1.num_batches_tracked", torch.tensor(True), "1.num_batches_tracked bool vs model int64"),
    ("1.num_batches_tracked", torch.tensor(2.5), "num_batches_tracked float32 with fractional"),
    ("1.num_batches_tracked", torch.tensor(float("nan")), "num_batches_tracked float32 with fractional"),
], ids=["complex", "int", "bool", "bool-counter", "fractional-counter", "nan-counter"])
@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_wrong_dtypes_refused_naming_the_tensor(tmp_path, key, value, shown, fmt):
    sd = _net().state_dict()
    sd[key] = value
    path = tmp_path / f"w.{fmt}"
    torch.save(sd, path) if fmt == "pt" else save_file(sd, str(path))
    with pytest.raises(CheckpointError, match="does not fit the model: wrong dtype") as exc:
        load_weights(_net(), path)
    assert shown in _one_line(exc)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.float8_e4m3fn])
def test_other_float_dtypes_load_and_whole_float_counters_are_cast(tmp_path, dtype):
    sd = {k: v.to(dtype) for k, v in _net().state_dict().items()}  # a blanket cast, counter included
    sd["1.num_batches_tracked"] = torch.tensor(7.0, dtype=dtype)
    path = tmp_path / "w.safetensors"
    save_file(sd, str(path))
    model = load_weights(_net(), path)
    assert model[1].num_batches_tracked.dtype == torch.int64 and int(model[1].num_batches_tracked) == 7
    assert torch.equal(model[0].weight, sd["0.weight"].float())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float8_e4m3fn])
def test_non_finite_low_precision_weights_refused(tmp_path, dtype):
    sd = _net().state_dict()
    sd["3.weight"] = sd["3.weight"].to(dtype)
    sd["3.weight"][0, 0] = float("nan")  # float8_e4m3fn has NaN but no Inf
    path = tmp_path / "w.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"non-finite values \(NaN/Inf\) in: 3\.weight \(1 of 288\)"):
        load_weights(_net(), path)


# --- 2. the sidecar --------------------------------------------------------------------------

def _sidecar() -> CheckpointSidecar:
    return CheckpointSidecar(model="tiny", num_classes=2, in_channels=3, image_size=(8, 8), mean=(0.5, 0.4, 0.3),
                             std=(0.2, 0.2, 0.2), class_names=("cat", "dog"), data_spec="folder:x",
                             data_fingerprint="abc123", split={"val_fraction": 0.15, "test_fraction": 0.15,
                                                               "split_seed": 0}, options={"width": 2})


def _write_sidecar(tmp_path, content: bytes | dict | list) -> tuple:
    weights = tmp_path / "best.safetensors"
    text = content if isinstance(content, bytes) else json.dumps(content).encode()
    (tmp_path / "best.json").write_bytes(text)
    return weights, "best.json"


def test_sidecar_round_trip(tmp_path):
    weights = tmp_path / "best.safetensors"
    sidecar = _sidecar()
    sidecar.save(weights)
    assert CheckpointSidecar.find(weights) == sidecar
    bare = CheckpointSidecar(**{**vars(sidecar), "split": {}, "options": {}})  # the defaults round-trip too
    bare.save(weights)
    assert CheckpointSidecar.find(weights) == bare
    assert CheckpointSidecar.find(tmp_path / "other.pt") is None
    assert bare.resize_rule == ResizeRule()  # sidecars written before resize rules were recorded
    cropped = CheckpointSidecar(**{**vars(sidecar), "resize": {"mode": "shorter_side", "scale": [10, 10],
                                                               "interpolation": "bicubic", "antialias": True}})
    cropped.save(weights)
    assert CheckpointSidecar.find(weights).resize_rule == ResizeRule("shorter_side", (10, 10), "bicubic", True)


@pytest.mark.parametrize(("content", "fragment"), [
    (b"\xff\xfe{}", "not UTF-8 text (byte 0)"),
    (b"caf\xe9", "not UTF-8 text (byte 3)"),
    (b"\xc3\x28", "not UTF-8 text"),
    (b"", "not valid JSON"),
    (b"{'model': 'x'}", "not valid JSON"),
    (b'{"model": "x",}', "not valid JSON"),
    (b"[" * 100_000, "not valid JSON"),
    (b'{"num_classes": NaN}', "not valid JSON: NaN is not a number JSON allows"),
    (b'{"mean": [Infinity]}', "not valid JSON: Infinity"),
    (b'{"std": [1e400]}', "not valid JSON: 1e400 is out of range"),
    (b'{"model": "a", "model": "b"}', "not valid JSON: duplicate key 'model'"),
    (b"[1, 2]", "the top level must be a JSON object, not [1, 2]"),
    (b'"best"', 'the top level must be a JSON object, not "best"'),
    (b"null", "the top level must be a JSON object, not null"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_sidecar_unreadable_bytes_refused(tmp_path, content, fragment):
    weights, name = _write_sidecar(tmp_path, content)
    with pytest.raises(CheckpointError) as exc:
        CheckpointSidecar.find(weights)
    assert name in _one_line(exc) and fragment in str(exc.value)


def _edit(**changes) -> dict:
    values = json.loads(json.dumps(vars(_sidecar())))
    for key, value in changes.items():
        if value is ...:
            del values[key]
        else:
            values[key] = value
    return values


@pytest.mark.parametrize(("values", "fragment"), [
    (_edit(model=...), "missing keys: model"),
    (_edit(num_classes=..., class_names=...), "missing keys: num_classes, class_names"),
    (_edit(data_fingerprint=...), "missing keys: data_fingerprint"),
    (_edit(colour="red"), "unknown keys: colour"),
    (_edit(mean=..., means=[0.5]), "missing keys: mean; unknown keys: means"),
    (_edit(num_classes="ten"), 'num_classes must be a positive integer, not "ten"'),
    (_edit(num_classes=2.5), "num_classes must be a positive integer, not 2.5"),
    (_edit(num_classes=True), "num_classes must be a positive integer, not true"),
    (_edit(num_classes=0), "num_classes must be a positive integer, not 0"),
    (_edit(model=""), "model must be a model name"),
    (_edit(in_channels=2), "in_channels must be 1 or 3, not 2"),
    (_edit(in_channels=3.0), "in_channels must be 1 or 3, not 3.0"),
    (_edit(image_size=[8]), "image_size must be two positive integers"),
    (_edit(image_size=[8, 0]), "image_size must be two positive integers"),
    (_edit(image_size=[8, 8.5]), "image_size must be two positive integers"),
    (_edit(image_size="8x8"), "image_size must be two positive integers"),
    (_edit(mean=[0.5, "a", 0.5]), "mean must be a list of 1 or 3 finite numbers"),
    (_edit(mean=0.5), "mean must be a list of 1 or 3 finite numbers"),
    (_edit(mean=[0.5, 0.5]), "mean must be a list of 1 or 3 finite numbers"),
    (_edit(mean=[0.5]), "mean has 1 values for in_channels 3"),
    (_edit(std=[0.2, 0.0, 0.2]), "std must be a list of 1 or 3 positive finite numbers"),
    (_edit(std=[0.2, -1, 0.2]), "std must be a list of 1 or 3 positive finite numbers"),
    (_edit(std=[True, 0.2, 0.2]), "std must be a list of 1 or 3 positive finite numbers"),
    (_edit(class_names=["cat"]), "class_names has 1 names for num_classes 2"),
    (_edit(class_names=["cat", 2]), "class_names must be a list of strings"),
    (_edit(class_names="cat,dog"), "class_names must be a list of strings"),
    (_edit(split=[0.15, 0.15, 0]), "split must be {} or an object"),
    (_edit(split={"val_fraction": 0.15, "test_fraction": 0.15}), "split must be {} or an object"),
    (_edit(split={"val_fraction": 0.15, "test_fraction": 0.15, "split_seed": 0, "x": 1}), "split must be"),
    (_edit(split={"val_fraction": "0.1", "test_fraction": 0.15, "split_seed": 0}), "split must be"),
    (_edit(split={"val_fraction": 0.1, "test_fraction": 1.5, "split_seed": 0}), "split must be"),
    (_edit(split={"val_fraction": 0.1, "test_fraction": 0.1, "split_seed": 1.0}), "split must be"),
    (_edit(options=[]), "options must be an object, not []"),
    (_edit(data_spec=None), "data_spec must be a string, not null"),
    (_edit(resize={"mode": "crop", "scale": None, "interpolation": "bilinear", "antialias": True}), "resize must be"),
    (_edit(resize={"mode": "shorter_side", "scale": [256], "interpolation": "bilinear", "antialias": True}),
     "resize must be"),
    (_edit(resize={"mode": "squash", "scale": None, "interpolation": "lanczos", "antialias": True}), "resize must"),
    (_edit(resize={"mode": "squash", "scale": None, "interpolation": "bilinear"}), "resize must be"),
])
def test_sidecar_invalid_values_refused(tmp_path, values, fragment):
    weights, name = _write_sidecar(tmp_path, values)
    with pytest.raises(CheckpointError) as exc:
        CheckpointSidecar.find(weights)
    assert name in _one_line(exc) and "is invalid" in str(exc.value) and fragment in str(exc.value)


def test_sidecar_optional_keys_may_be_absent_and_ints_are_floats(tmp_path):
    weights, _ = _write_sidecar(tmp_path, _edit(split=..., options=..., std=[1, 1, 1]))
    found = CheckpointSidecar.find(weights)
    assert found.split == {} and found.options == {} and found.std == (1.0, 1.0, 1.0)
    assert isinstance(found.std[0], float) and found.image_size == (8, 8)


# --- 3. zip archives that would inflate far beyond their size --------------------------------

@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """A real torch.save archive plus one DEFLATE entry of BOMB_BYTES zeros, streamed 1 MiB at a time."""
    folder = tmp_path_factory.mktemp("bomb")
    torch.save(_net().state_dict(), folder / "src.pt")
    path = folder / "bomb.pt"
    deflate = {"compression": zipfile.ZIP_DEFLATED, "compresslevel": 1}
    with zipfile.ZipFile(folder / "src.pt") as src, zipfile.ZipFile(path, "w", **deflate) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))  # stored, as torch wrote them
        with dst.open("src/data/99", "w") as f:
            chunk = bytes(1 << 20)
            for _ in range(BOMB_BYTES // len(chunk)):
                f.write(chunk)
    assert path.stat().st_size < 2 << 20
    return path


def test_archive_over_the_limit_refused(bomb):
    with pytest.raises(CheckpointError) as exc:
        check_archive_sizes(bomb, what="checkpoint", error=CheckpointError, limit_bytes=100_000_000)
    assert _one_line(exc).startswith(f"checkpoint {bomb}: its zip entries declare 134.2 MB uncompressed, "
                                     f"more than 100.0 MB (the given limit)")


def test_archive_compression_ratio_refused_without_a_limit(bomb):
    with pytest.raises(CheckpointError, match=r"zip entry src/data/99 inflates .* to 134\.2 MB \(over 100:1"):
        check_archive_sizes(bomb, what="checkpoint", error=CheckpointError)


def test_bomb_refused_before_torch_load(bomb, monkeypatch):
    def never(*_, **__):
        raise AssertionError("torch.load was called")
    monkeypatch.setattr(torch, "load", never)
    with pytest.raises(CheckpointError, match="decompression bomb"):
        read_state_dict(bomb)
    with pytest.raises(CheckpointError, match="decompression bomb"):
        check_weights_file(str(bomb))


def _duplicate_central_entry(path) -> None:
    """Append a second central-directory record for the first entry: two names, one block of data."""
    raw = bytearray(path.read_bytes())
    eocd = raw.rindex(b"PK\x05\x06")
    count, cd_size, cd_offset = struct.unpack_from("<HII", raw, eocd + 10)
    name_len, extra_len, comment_len = struct.unpack_from("<HHH", raw, cd_offset + 28)
    first = raw[cd_offset:cd_offset + 46 + name_len + extra_len + comment_len]
    struct.pack_into("<HHI", raw, eocd + 8, count + 1, count + 1, cd_size + len(first))
    path.write_bytes(bytes(raw[:eocd] + first + raw[eocd:]))


def test_overlapping_entries_and_small_limits_refused(tmp_path):
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w") as z:  # stored: the data really occupies the file
        z.writestr("a/data/0", np.random.default_rng(0).bytes(1 << 20))
    assert len(check_archive_sizes(path, what="archive")) == 1
    _duplicate_central_entry(path)
    with pytest.raises(CheckpointError, match=r"claim 2\.1 MB of data in a 1\.0 MB file \(overlapping entries\)"):
        check_archive_sizes(path, what="checkpoint", error=CheckpointError)
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04" + b"\x00" * 100)  # torch's magic, no central directory
    with pytest.raises(CheckpointError, match="not a readable zip archive"):
        read_state_dict(tmp_path / "cut.pt")


def test_npz_files_use_the_same_check(tmp_path):
    path = tmp_path / "split.npz"
    np.savez_compressed(path, train=np.arange(1000), test=np.zeros(5000))
    assert {e.filename for e in check_archive_sizes(path, what="split file", error=DataError)} == {"train.npy",
                                                                                                   "test.npy"}
    with pytest.raises(DataError, match=rf"^split file {path}: .* more than 1.0 kB \(the given limit\)"):
        check_archive_sizes(path, what="split file", error=DataError, limit_bytes=1000)


# --- 4. the --check dry run ------------------------------------------------------------------

def test_check_valid_files(tmp_path):
    torch.save(_net().state_dict(), tmp_path / "a.pt")
    assert check_weights_file(str(tmp_path / "a.pt")).startswith("a.pt: torch zip archive, ")
    save_file(_net().state_dict(), str(tmp_path / "best.safetensors"))
    _sidecar().save(tmp_path / "best.safetensors")
    line = check_weights_file(str(tmp_path / "best.safetensors"))
    assert line.startswith("best.safetensors: safetensors, 9 tensors, ") and line.endswith(
        "kB, sidecar: best.json (tiny, 2 classes)")
    torch.save({"w": torch.zeros(2)}, tmp_path / "old.th", _use_new_zipfile_serialization=False)
    assert check_weights_file(str(tmp_path / "old.th")).startswith("old.th: legacy torch pickle")


def test_check_reads_no_tensor(tmp_path, monkeypatch):
    torch.save(_net().state_dict(), tmp_path / "a.pt")
    monkeypatch.setattr(torch, "load", lambda *_, **__: pytest.fail("torch.load was called"))
    assert "sidecar: none" in check_weights_file(str(tmp_path / "a.pt"))


def _safetensors(header: bytes, data: bytes = b"", length: int | None = None) -> bytes:
    return struct.pack("<Q", len(header) if length is None else length) + header + data


def _header(**tensor) -> bytes:
    return json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], **tensor}}).encode()


@pytest.mark.parametrize(("name", "content", "fragment"), [
    ("", None, "empty path"),
    ("missing.pt", None, "does not exist"),
    ("folder", None, "is not a file"),
    ("w.pt", b"garbage" * 10, "neither a torch checkpoint nor a safetensors file (it starts with 67 61 72"),
    ("w.bin", b"\x80\x04\x95" + b"\x00" * 20, "neither a torch checkpoint"),
    ("w.pt", b"PK\x03\x04" + b"\x00" * 100, "not a readable zip archive"),
    ("w.safetensors", b"\x00" * 4, "too short (4 bytes)"),
    ("w.safetensors", _safetensors(b"{}", length=10_000), "header length 10000 is larger than the file"),
    ("w.safetensors", _safetensors(b"not json"), "safetensors header is not JSON"),
    ("w.safetensors", _safetensors(b"\xff{}"), "safetensors header is not JSON"),
    ("w.safetensors", _safetensors(b"[1]"), "safetensors header is not a JSON object"),
    ("w.safetensors", _safetensors(_header(dtype="X9"), bytes(8)), "tensor 'w' has unknown dtype 'X9'"),
    ("w.safetensors", _safetensors(_header(shape=[-2]), bytes(8)), "shape that is not a list of non-negative"),
    ("w.safetensors", _safetensors(_header(data_offsets=[0, 80]), bytes(8)), "data_offsets outside the 8-byte"),
    ("w.safetensors", _safetensors(_header(shape=[3]), bytes(8)), "holds 8 bytes for shape [3] of F32"),
    ("w.safetensors", _safetensors(_header(extra=1), bytes(8)), "needs exactly dtype, shape and data_offsets"),
])
def test_check_broken_files(tmp_path, name, content, fragment):
    path = tmp_path / name if name else None
    if name == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as exc:
        check_weights_file(str(path) if path else "")
    assert fragment in _one_line(exc) and (not name or name in str(exc.value))


def test_check_refuses_a_zip_that_is_not_torch_and_a_bad_sidecar(tmp_path):
    with zipfile.ZipFile(tmp_path / "w.pt", "w") as z:
        z.writestr("notes.txt", "hello")
        z.writestr("a/b/data.pkl", "nested too deep")
    with pytest.raises(CheckpointError, match=r"without a \*/data\.pkl entry"):
        check_weights_file(str(tmp_path / "w.pt"))
    save_file(_net().state_dict(), str(tmp_path / "best.safetensors"))
    (tmp_path / "best.json").write_text('{"model": "tiny"}')
    with pytest.raises(CheckpointError, match=r"best\.json \(the checkpoint's sidecar\) is invalid: missing keys"):
        check_weights_file(str(tmp_path / "best.safetensors"))
