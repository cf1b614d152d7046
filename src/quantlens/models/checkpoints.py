"""Reading and writing weights safely.

Checkpoints are untrusted input: torch files are read with `weights_only=True` (tensors, numbers,
strings and containers only), safetensors files hold tensors by construction. Accepted layouts:
a plain state_dict; `{'state_dict': ...}` (this includes Lightning `.ckpt` files) or
`{'model_state_dict' | 'model': ...}`; with `module.` (DataParallel), `model.` (Lightning) and
`_orig_mod.` (torch.compile) prefixes stripped when every key carries them.

Tensors are checked before anything reads their values: sparse, meta, nested and quantized tensors
are refused (torch.load does not validate sparse indices by default, and a meta tensor has no data),
and each tensor's dtype must suit the model's tensor it is copied into.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

from quantlens.archives import check_archive_sizes, starts_like_zip
from quantlens.atomic import atomic_path
from quantlens.errors import CheckpointError, describe

_NESTED_KEYS = ("state_dict", "model_state_dict", "model")
_PREFIXES = ("module.", "model.", "_orig_mod.")
_SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
# Dtypes that load_state_dict casts into float weights. Packed float4 (float4_e2m1fn_x2) cannot be
# cast, and e8m0 holds only powers of two (block scales, not weights).
_FLOAT_SOURCES = (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn,
                  torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz)
_ISFINITE_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)  # others: cast first


def _read_torch(path: Path) -> object:
    try:
        if starts_like_zip(path):  # torch.save's format since 1.6, else a legacy pickle
            check_archive_sizes(path, what="checkpoint", error=CheckpointError)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found is None:  # not a pickle of objects at all: a damaged or foreign file
            raise CheckpointError(f"{path} is not a readable torch checkpoint (unpickling failed)") from None
        raise CheckpointError(
            f"{path} holds pickled Python objects, not only tensors (it needs {found.group(1)}); refused: "
            f"checkpoints are loaded with weights_only=True. If you trust the file, re-save its state_dict "
            f"(torch.save(model.state_dict(), ...)) or convert it to safetensors") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({describe(exc)})") from None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from None


def _is_tensor_dict(obj: object) -> bool:
    return isinstance(obj, dict) and any(isinstance(v, torch.Tensor) for v in obj.values())


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    changed = True
    while changed and state:
        changed = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, keyed as the model's state_dict expects."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    obj: object = _read_safetensors(path) if path.suffix.lower() in _SAFETENSORS_SUFFIXES else _read_torch(path)
    if isinstance(obj, dict) and not _is_tensor_dict(obj):
        nested = next((obj[k] for k in _NESTED_KEYS if _is_tensor_dict(obj.get(k))), None)
        if nested is None:
            raise CheckpointError(f"{path} holds no state_dict (top-level keys: {', '.join(map(str, list(obj)[:8]))})")
        obj = nested
    if not _is_tensor_dict(obj):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state_dict of tensors")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    odd = [f"{k} ({why})" for k, t in tensors.items() if (why := _storage_problem(t))]
    if odd:
        raise CheckpointError(f"checkpoint {path} holds tensors that are not dense tensors with data: {_first(odd, 3)}")
    return _strip_prefixes(tensors)


def _storage_problem(t: torch.Tensor) -> str | None:
    """Why `t` is not a plain dense tensor in memory; asks only metadata, never values."""
    if t.is_nested:
        return "nested"
    if t.layout != torch.strided:
        return str(t.layout).removeprefix("torch.")  # sparse_coo, sparse_csr, ...
    if t.is_meta:
        return "meta: a shape without data"
    if t.is_quantized:
        return f"quantized {_name(t.dtype)}"
    return None


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _whole_numbers_in(t: torch.Tensor, dtype: torch.dtype) -> bool:
    """Every value of float `t` is a whole number that integer `dtype` holds."""
    info, v = torch.iinfo(dtype), t.double()
    return t.numel() == 0 or bool(torch.isfinite(v).all() and (v == v.round()).all()
                                  and v.min() >= info.min and v.max() <= info.max)


def _dtype_problem(t: torch.Tensor, want: torch.Tensor) -> str | None:
    """Why checkpoint tensor `t` cannot be copied into the model's tensor `want`."""
    got = t.dtype
    if want.is_floating_point():
        ok = got in _FLOAT_SOURCES
    elif want.dtype == torch.bool or want.is_complex():
        ok = got == want.dtype
    else:  # an integer buffer, e.g. BatchNorm's num_batches_tracked (int64)
        is_int = not (got.is_floating_point or got.is_complex or got == torch.bool)
        # a blanket `.half()` over a state_dict turns counters into floats: whole numbers are fine
        ok = is_int or (got in _FLOAT_SOURCES and _whole_numbers_in(t, want.dtype))
        if not ok and got in _FLOAT_SOURCES:
            return f"{_name(got)} with fractional, non-finite or out-of-range values vs model {_name(want.dtype)}"
    return None if ok else f"{_name(got)} vs model {_name(want.dtype)}"


def _count_non_finite(t: torch.Tensor) -> int:
    return int((~torch.isfinite(t if t.dtype in _ISFINITE_DTYPES else t.float())).sum())


def _first(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a checkpoint into `model` strictly; any mismatch is one message naming the first keys."""
    state = read_state_dict(path)
    expected = model.state_dict()
    # BatchNorm's step counter is not needed for inference and is absent from many older files.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mistyped = [f"{k} {why}" for k, v in expected.items() if k in state and (why := _dtype_problem(state[k], v))]
    misshaped = [f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                 for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if mistyped:
        problems.append(f"wrong dtype: {_first(mistyped, 3)}")
    if misshaped:
        problems.append(f"shape mismatch: {_first(misshaped, 3)}")
    if missing:
        problems.append(f"missing keys: {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_first(unexpected)}")
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit the model: " + "; ".join(problems))
    # NaN/Inf weights would only surface later as NaN outputs, far from the tensor that holds them
    non_finite = [f"{k} ({n} of {t.numel()})" for k, t in state.items()
                  if t.is_floating_point() and (n := _count_non_finite(t))]
    if non_finite:
        raise CheckpointError(f"checkpoint {path} holds non-finite values (NaN/Inf) in: {_first(non_finite)}")
    model.load_state_dict(state, strict=False)
    return model


def save_weights(model: nn.Module, path: str | Path) -> Path:
    """Write the model's state_dict as safetensors, atomically."""
    from safetensors.torch import save_file

    # safetensors refuses tensors that share memory; contiguous copies are always safe.
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return Path(path)
