"""A dry run over a weights file (`--check`): what kind of file it is and whether it looks loadable,
read from its headers alone; no tensor is loaded and nothing is unpickled.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path, PurePosixPath

from quantlens.archives import check_archive_sizes, format_bytes, starts_like_zip
from quantlens.errors import CheckpointError
from quantlens.models.sidecar import CheckpointSidecar

# torch.save(..., _use_new_zipfile_serialization=False): pickle protocol 2, then torch's magic number (LONG1)
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_SAFETENSORS_SUFFIXES = (".safetensors", ".sft")  # as in checkpoints.py, which this avoids importing (torch)
# safetensors dtype -> bits per element (F4 packs two elements in a byte)
_SAFETENSORS_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
                     "F8_E8M0": 8, "F4": 4, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32,
                     "F32": 32, "I64": 64, "U64": 64, "F64": 64, "C64": 64}
_MAX_HEADER = 100_000_000  # the safetensors library's own limit on its JSON header


def _torch_zip(path: Path) -> str:
    entries = check_archive_sizes(path, what="checkpoint", error=CheckpointError)
    # torch.save writes '<archive name>/data.pkl' (the pickled structure) beside '<archive name>/data/<n>'
    if not any(len(PurePosixPath(e.filename).parts) == 2 and e.filename.endswith("/data.pkl") for e in entries):
        raise CheckpointError(f"checkpoint {path} is a zip archive without a */data.pkl entry: not a torch checkpoint")
    return f"torch zip archive, {len(entries)} entries"


def _count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _tensor_problem(info: object, data_bytes: int) -> str | None:
    """What is wrong with one tensor's entry in a safetensors header, if anything."""
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        return "needs exactly dtype, shape and data_offsets"
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in _SAFETENSORS_BITS:
        return f"has unknown dtype {str(dtype)[:20]!r}"
    if not (isinstance(shape, list) and all(_count(d) for d in shape)):
        return "has a shape that is not a list of non-negative integers"
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_count(o) for o in offsets)
            and offsets[0] <= offsets[1] <= data_bytes):
        return f"has data_offsets outside the {data_bytes}-byte data section"
    if math.prod(shape) * _SAFETENSORS_BITS[dtype] != 8 * (offsets[1] - offsets[0]):
        return f"holds {offsets[1] - offsets[0]} bytes for shape {shape} of {dtype}"
    return None


def _safetensors(path: Path, size: int) -> str:
    # layout: u64 little-endian header length n | n bytes of JSON | data section
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"checkpoint {path} is too short ({size} bytes) for a safetensors header")
        (n,) = struct.unpack("<Q", prefix)
        if n > size - 8 or n > _MAX_HEADER:
            raise CheckpointError(f"checkpoint {path}: safetensors header length {n} is larger than the file "
                                  f"({size} bytes) allows")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        why = str(exc).splitlines()[0]
        raise CheckpointError(f"checkpoint {path}: safetensors header is not JSON ({why})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint {path}: safetensors header is not a JSON object")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    for name, info in tensors.items():
        if problem := _tensor_problem(info, size - 8 - n):
            raise CheckpointError(f"checkpoint {path}: safetensors tensor {name[:80]!r} {problem}")
    return f"safetensors, {len(tensors)} tensors"


def check_weights_file(path: str) -> str:
    """One line describing the weights file at `path`, e.g. 'resnet20.th: torch zip archive, 9 entries,
    1.1 MB, sidecar: none'; CheckpointError naming the path when it is missing or malformed."""
    if not path:
        raise CheckpointError("empty path: no weights file given")
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} is not a file")
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(len(_LEGACY_MAGIC))
    if starts_like_zip(p):
        kind = _torch_zip(p)
    elif p.suffix.lower() in _SAFETENSORS_SUFFIXES or head[8:9] == b"{":
        kind = _safetensors(p, size)
    elif head == _LEGACY_MAGIC:
        kind = "legacy torch pickle (pre-1.6 format; its sizes cannot be checked without reading it)"
    else:
        raise CheckpointError(f"checkpoint {p} is neither a torch checkpoint nor a safetensors file "
                              f"(it starts with {head[:8].hex(' ')})")
    sidecar = CheckpointSidecar.find(p)  # validates it
    named = CheckpointSidecar.path_for(p).name
    described = "none" if sidecar is None else f"{named} ({sidecar.model}, {sidecar.num_classes} classes)"
    return f"{p.name}: {kind}, {format_bytes(size)}, sidecar: {described}"
