"""The fused (torch.compile) kernels equal the eager ones bit for bit; the fallback is clean."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from quantlens.formats import COMPILE_MIN_NUMEL, KERNELS, Kernel, get_format, kernel_status, mx_scales, nvfp4_scales
from quantlens.formats.integer import INT_NEAREST, _int_nearest
from quantlens.formats.minifloat import MINIFLOAT_NEAREST, _minifloat_nearest, kernel_constants
from quantlens.scaling import PerBlock, PerChannel, PerTensor, quantize_dequantize
from quantlens.scaling.qparams import ASYMMETRIC_SCALE, SYMMETRIC_SCALE

from ._reference import same_bits


def _adversarial(n: int, seed: int = 0) -> torch.Tensor:
    """Random bit patterns (NaN payloads, Inf, subnormals, huge) mixed with normal values, ties, zeros."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, size=n // 2, dtype=np.uint64).astype(np.uint32).view(np.float32)
    normal = rng.standard_normal(n - n // 2 - 8).astype(np.float32) * 10
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 0.5, -2.5, 1e-45], dtype=np.float32)
    return torch.from_numpy(np.concatenate([bits, normal, specials]))


LAYOUTS = [PerTensor(), PerChannel(0), PerChannel(1), PerBlock(32, -1), PerBlock(16, 0)]
FORMATS = ["fp8_e4m3", "fp8_e5m2", "fp4_e2m1", "e8m0", "bf16", "int8", "uint8", "mxfp6_e2m3", "nvfp4", "mxint8"]


# Block formats define their own blocks: they pair with PerBlock layouts only.
FORMAT_LAYOUTS = [(name, layout) for name in FORMATS for layout in LAYOUTS
                  if not hasattr(get_format(name), "block_size") or isinstance(layout, PerBlock)]


@pytest.mark.parametrize("name, granularity", FORMAT_LAYOUTS, ids=lambda v: v if isinstance(v, str) else repr(v))
@pytest.mark.parametrize("saturate", [True, False])
def test_default_path_equals_eager(name, granularity, saturate):
    """The default path on a large tensor (fused statistics and elements) against eager torch.
    The kernels take the format as tensors, so one build per layout serves every format."""
    fmt = get_format(name)
    x = _adversarial(256 * 320).reshape(256, 320)  # >= COMPILE_MIN_NUMEL: "auto" fuses
    stats = {}
    if not hasattr(fmt, "block_size"):  # calibrated statistics keep NaN/Inf elementwise
        stats = dict(min_val=-3.0, max_val=5.0) if getattr(fmt, "symmetric", True) is False else dict(amax=3.0)
    fused = quantize_dequantize(x, fmt, granularity, saturate=saturate, **stats)
    eager = quantize_dequantize(x, fmt, granularity, saturate=saturate, path="eager", **stats)
    assert same_bits(fused.numpy(), eager.numpy()).all()
    from_data = quantize_dequantize(x, fmt, granularity, saturate=saturate)  # statistics from x (NaN groups)
    from_data_eager = quantize_dequantize(x, fmt, granularity, saturate=saturate, path="eager")
    assert same_bits(from_data.numpy(), from_data_eager.numpy()).all()


@pytest.mark.parametrize("name", ["fp8_e4m3", "int8"])
def test_activation_layout_per_channel_of_nchw(name):
    x = _adversarial(8 * 16 * 24 * 24, seed=5).reshape(8, 16, 24, 24)  # (N, C, H, W): scale (1, C, 1, 1)
    fused = quantize_dequantize(x, name, PerChannel(1), amax=torch.linspace(0.5, 8, 16))
    eager = quantize_dequantize(x, name, PerChannel(1), amax=torch.linspace(0.5, 8, 16), path="eager")
    assert same_bits(fused.numpy(), eager.numpy()).all()


def _ranges(n: int):
    """(lo, hi) per group in the (1, N, 1, 1) layout: NaN, Inf, zeros, subnormals, huge, ordinary."""
    x = _adversarial(2 * n, seed=3).reshape(2, n)
    lo, hi = torch.minimum(x[0], x[1]), torch.maximum(x[0], x[1])
    return lo.reshape(1, n, 1, 1), hi.reshape(1, n, 1, 1)


def test_fused_scale_kernels_equal_eager():
    lo, hi = _ranges(COMPILE_MIN_NUMEL)
    amax = torch.maximum(-lo, hi)
    for pow2 in (False, True):
        flag = torch.tensor(pow2)
        runs = [SYMMETRIC_SCALE(lo, hi, torch.tensor(127.0), flag, path=p) for p in ("compiled", "eager")]
        assert same_bits(runs[0].numpy(), runs[1].numpy()).all()
        runs = [ASYMMETRIC_SCALE(lo, hi, torch.tensor([0.0, 255.0]), flag, path=p) for p in ("compiled", "eager")]
        assert all(same_bits(a.numpy(), b.numpy()).all() for a, b in zip(*runs, strict=False))
    mx = get_format("mxfp4")
    runs = [mx_scales(amax.abs(), mx, path=p) for p in ("compiled", "eager")]
    assert same_bits(runs[0].numpy(), runs[1].numpy()).all()
    finite = torch.where(torch.isfinite(amax), amax.abs(), torch.zeros_like(amax))
    for given in (None, 1000.0):
        runs = [nvfp4_scales(finite, given, path=p) for p in ("compiled", "eager")]
        assert all(same_bits(a.numpy(), b.numpy()).all() for a, b in zip(*runs, strict=False))


def test_auto_uses_the_fused_kernel_for_large_tensors():
    x = torch.randn(COMPILE_MIN_NUMEL)
    quantize_dequantize(x, "fp8_e4m3")
    assert MINIFLOAT_NEAREST.status == "fused"


def _args(n: int):
    x = torch.randn(1, 1, n, 1)
    one = torch.ones(1, 1, 1, 1)
    ip, fp = kernel_constants(get_format("fp8_e4m3"), True, x.device)
    return x, one, one, ip, fp


def test_fallback_when_the_fused_build_fails(monkeypatch):
    kernel = Kernel(_minifloat_nearest)  # a private instance: the shared kernels stay untouched

    def broken_build():
        def run(*args):
            raise RuntimeError("no C++ compiler here")
        return run

    monkeypatch.setattr(kernel, "_fused", broken_build)
    args = _args(COMPILE_MIN_NUMEL)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler here"):
        out = kernel(*args, path="auto")
    assert torch.equal(out, _minifloat_nearest(*args))
    assert kernel.failure and "RuntimeError" in kernel.failure
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once; later calls go straight to eager
        assert torch.equal(kernel(*args, path="auto"), out)
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        kernel(*args, path="compiled")  # asked for explicitly: no silent fallback


def test_a_later_failure_runs_that_call_eagerly_without_disabling_the_fused_path(monkeypatch):
    kernel = Kernel(_minifloat_nearest)
    args = _args(COMPILE_MIN_NUMEL)
    monkeypatch.setattr(kernel, "_fused", lambda: _minifloat_nearest)  # a build that works
    kernel(*args, path="auto")
    assert kernel.status == "fused"

    def broken_build():
        def run(*a):
            raise RuntimeError("recompile limit")
        return run

    monkeypatch.setattr(kernel, "_fused", broken_build)
    with pytest.warns(RuntimeWarning, match="new input shape"):
        out = kernel(*args, path="auto")
    assert torch.equal(out, _minifloat_nearest(*args)) and kernel.status == "fused" and kernel.failure is None


def test_torch_settings_are_restored():
    import torch._dynamo.config as dynamo_config

    before = dynamo_config.recompile_limit
    quantize_dequantize(torch.randn(COMPILE_MIN_NUMEL), "fp8_e4m3")
    assert dynamo_config.recompile_limit == before
    assert kernel_status(KERNELS)["minifloat_nearest"] == "fused"


def test_genuine_errors_propagate_and_do_not_disable_the_fused_path(monkeypatch):
    kernel = Kernel(_int_nearest)
    x = torch.randn(1, 1, COMPILE_MIN_NUMEL, 1)
    bad_scale = torch.ones(1, 1, 3, 1)  # does not broadcast against x (1, 1, N, 1)
    qlim = torch.tensor([-128.0, 127.0, 1.0])
    with pytest.raises(RuntimeError):
        kernel(x, bad_scale, torch.zeros(1), qlim, path="auto")
    assert kernel.failure is None


def test_unknown_path_refused():
    with pytest.raises(ValueError, match="kernel path"):
        INT_NEAREST(torch.ones(4), torch.ones(1), torch.zeros(1), torch.tensor([-1.0, 1.0, 1.0]), path="fast")
    with pytest.raises(ValueError, match="kernel path"):
        quantize_dequantize(torch.ones(3), "int8", path="gpu")


def test_negative_zero_and_nan_survive_the_fused_kernel():
    x = torch.tensor([-0.0, -1e-30, math.nan, -math.inf] * (COMPILE_MIN_NUMEL // 4))
    out = quantize_dequantize(x, "fp8_e4m3", amax=448.0)
    assert out[:4].tolist()[3] == -448.0 and math.isnan(out[2].item())
    assert math.copysign(1.0, out[0].item()) == -1 and math.copysign(1.0, out[1].item()) == -1
