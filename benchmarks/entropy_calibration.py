"""Entropy (KL) calibration of every activation of ResNet-18 224: quantlens vs ONNX Runtime, one run.

Acceptance: calibrating all activations of ResNet-18 at 224x224 on 64 images is at least 10x faster
than ONNX Runtime's Entropy calibrator (2048 bins, 128 and 255 quantized bins) on the same images,
with thresholds at least as good.

Model: the zoo ResNet-18 (ImageNet layout, 1000 classes) with seeded *random* weights (speed does
not depend on them), BatchNorm folded into the convolutions first, so both tools see one graph
(Conv, Relu, MaxPool, Add, global pool, Gemm). Images: 64 real CIFAR-10 test JPEGs resized to
224x224 (classes interleaved) when ../shared/data is there, else seeded random inputs (said so).

What is timed (wall clock, everything the tool needs to produce ranges from the float model):
  * quantlens: `quantize_model` with an `entropy` observer (int8_asym, per tensor) on every
    activation a layer reads (inputs of Conv2d, Linear, Add, ReLU, MaxPool2d, AdaptiveAvgPool2d)
    and on the logits, then `calibrate` (float forward passes + histograms + KL search).
  * ONNX Runtime: `create_calibrator(fp32.onnx, op_types_to_calibrate=None, Entropy, num_bins 2048,
    num_quantized_bins 128 | 255)` (graph augmentation + session), `collect_data`, `compute_data`,
    on the BN-folded FP32 export of the same model: every float tensor of the graph.
  Both read the same 4 batches of 16 images. quantlens runs are repeated around the ORT runs
  (q, ort-128, q, ort-255, q) and its median is used; each ORT setting runs once (it takes minutes).

Quality (not timed): ONNX tensors are matched to quantlens's quantizers by value (a probe image
through both, same shape and allclose). For each tensor both tools calibrated, with each tool's
range deployed on the unsigned 8-bit asymmetric grid (ONNX Runtime's u8 QDQ: scale
(hi - lo) / 255 over a range widened to hold 0, zero point round(-lo / scale)), a second pass over
the same 64 images measures
  * KL(P || Q): P the histogram of the tensor's non-zero values (0 is exact on every grid, and the
    spike of zeros after ReLU would swamp the rest) on `--fine-bins` bins over [min, max]; Q the mass of each
    8-bit code spread evenly over the non-empty fine bins that fall on that code (clipped values
    fall on the end codes, so clipping shows up as a wide, uneven cell). Lower is better.
  * SQNR (dB) of the fake-quantized tensor against the float one, exactly. Higher is better.
  * end to end: SQNR of the logits when every calibrated activation is fake-quantized with the
    tool's ranges (weights stay float), the whole-network effect of the thresholds.
min-max ranges are shown as a reference.

Usage: python benchmarks/entropy_calibration.py [OUT_DIR] [--images 64] [--batch 16] [--threads 1]
           [--ort-quantized-bins 128,255] [--fine-bins 8192] [--quantlens-repeats 3]
Writes OUT_DIR/entropy_calibration.json (results + environment) and OUT_DIR/table.txt.
Default OUT_DIR: /tmp/quantlens-entropy-calibration.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from cifar_images import cifar_images
from torch import nn

from quantlens.atomic import write_json, write_text
from quantlens.backends.onnx_export import INPUT_NAME, export_onnx
from quantlens.environment import capture_environment
from quantlens.models.build import build_model
from quantlens.nn import calibrate, quantize_model
from quantlens.nn.convert import quant_wrappers
from quantlens.nn.ops import Add
from quantlens.nn.spec import LayerPlan, TensorSpec
from quantlens.passes.registry import apply_pass
from quantlens.scaling import PerTensor, compute_qparams

ACTIVATION_READERS = (nn.Conv2d, nn.Linear, Add, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d)
SPEC = TensorSpec(format="int8_asym", mode="tensor", observer="entropy")


# ---------------------------------------------------------------------------------------------- data, model

def entropy_plans(model: nn.Module) -> dict[str, LayerPlan]:
    """An entropy-observed int8_asym input quantizer on every layer that reads an activation, and one
    on the classifier's output (the logits): together every activation tensor of the network."""
    plans = {}
    for name, module in model.named_modules():
        if isinstance(module, ACTIVATION_READERS):
            plans[name] = LayerPlan(inputs=SPEC, outputs=SPEC if isinstance(module, nn.Linear) else None)
    return plans


# ---------------------------------------------------------------------------------------------- the two tools

def time_quantlens(folded: nn.Module, batches: list[torch.Tensor]) -> tuple[float, nn.Module]:
    start = time.perf_counter()
    qmodel = quantize_model(folded, entropy_plans(folded))
    calibrate(qmodel, batches)  # forward passes, histograms, and the KL search in finish_calibration
    return time.perf_counter() - start, qmodel


def quantlens_ranges(qmodel: nn.Module) -> dict[str, tuple[float, float]]:
    return {q.where: (float(q.observer.range()[0]), float(q.observer.range()[1]))
            for _, w in quant_wrappers(qmodel) for q in w.activation_quantizers()}


def quantlens_breakdown(folded: nn.Module, batches: list[torch.Tensor], qmodel: nn.Module,
                        total: float) -> dict[str, float]:
    """Where quantlens's calibration time goes: the float forward passes alone (timed), the KL
    searches (every observer's threshold() again, timed), and the rest (histograms, wrappers)."""
    start = time.perf_counter()
    with torch.no_grad():
        for x in batches:
            folded(x)
    forward = time.perf_counter() - start
    start = time.perf_counter()
    for _, w in quant_wrappers(qmodel):
        for q in w.activation_quantizers():
            q.observer.threshold()
    search = time.perf_counter() - start
    return {"float_forward_s": forward, "kl_search_s": search,
            "histograms_and_rest_s": max(0.0, total - forward - search)}


class _Reader:
    """onnxruntime CalibrationDataReader protocol over the same float32 batches."""

    def __init__(self, batches: list[torch.Tensor]) -> None:
        self._feeds = iter([{INPUT_NAME: b.numpy()} for b in batches])

    def get_next(self):
        return next(self._feeds, None)


def time_ort(onnx_path: Path, batches: list[torch.Tensor], quantized_bins: int, work: Path, threads: int) -> dict:
    """One ORT Entropy calibration; seconds per phase, ranges per tensor, and the calibrator (for probing).
    Its inference session is rebuilt with `threads` intra-op threads (create_calibrator takes no session
    options; its default is every core), inside the timed setup."""
    import onnxruntime as ort
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    augmented = work / f"augmented-{quantized_bins}.onnx"
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a line per phase
        t0 = time.perf_counter()
        calibrator = create_calibrator(str(onnx_path), None, augmented_model_path=str(augmented),
                                       calibrate_method=CalibrationMethod.Entropy,
                                       extra_options={"num_bins": 2048, "num_quantized_bins": quantized_bins})
        options = ort.SessionOptions()  # as create_inference_session builds it, plus the thread count
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.intra_op_num_threads = threads
        calibrator.infer_session = ort.InferenceSession(str(augmented), options, providers=["CPUExecutionProvider"])
        t1 = time.perf_counter()
        calibrator.collect_data(_Reader(batches))
        t2 = time.perf_counter()
        data = calibrator.compute_data()
        t3 = time.perf_counter()
    ranges = {name: tuple(float(v) for v in data[name].range_value) for name in data}
    return {"seconds": t3 - t0, "setup_s": t1 - t0, "collect_s": t2 - t1, "compute_s": t3 - t2,
            "tensors": len(ranges), "ranges": ranges, "calibrator": calibrator}


# ---------------------------------------------------------------------------------------------- matching

def probe_quantlens(folded: nn.Module, plans: dict[str, LayerPlan], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The tensor behind every quantizer (`where` as quantlens names it) for one input."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name, plan in plans.items():
        module = folded.get_submodule(name)

        def pre(mod, args, name=name):
            for i, a in enumerate(args):
                seen[f"{name} input {i}"] = a.detach().clone()

        handles.append(module.register_forward_pre_hook(pre))
        if plan.outputs is not None:
            handles.append(module.register_forward_hook(
                lambda mod, args, out, name=name: seen.__setitem__(f"{name} output", out.detach().clone())))
    try:
        with torch.no_grad():
            folded(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def match_tensors(quantlens_values: dict[str, torch.Tensor], calibrator, x: torch.Tensor,
                  candidates: set[str]) -> dict[str, str]:
    """quantizer `where` -> ONNX tensor name holding the same values (same shape, allclose), closest first."""
    session = calibrator.infer_session
    names = [o.name for o in session.get_outputs()]
    onnx_values = dict(zip(names, session.run(None, {INPUT_NAME: x.numpy()}), strict=True))
    onnx_values = {k: v for k, v in onnx_values.items() if k in candidates}
    matched = {}
    for where, value in quantlens_values.items():
        ref = value.numpy()
        tolerance = 1e-4 + 1e-3 * float(np.abs(ref).max())
        best = None
        for name, other in onnx_values.items():
            if other.shape != ref.shape:
                continue
            diff = float(np.abs(other - ref).max())
            if diff <= tolerance and (best is None or diff < best[0]):
                best = (diff, name)
        if best is not None:
            matched[where] = best[1]
    return matched


# ---------------------------------------------------------------------------------------------- quality

def u8_grid(lo: float, hi: float) -> tuple[float, int]:
    """ONNX Runtime's u8 asymmetric scale and zero point for a range (widened to hold 0)."""
    rmin, rmax = min(lo, 0.0), max(hi, 0.0)
    scale = (rmax - rmin) / 255.0 if rmax > rmin else 1.0
    return scale, int(min(255, max(0, round(-rmin / scale))))


def fake_u8(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    codes = torch.clamp(torch.round(x / scale) + zero_point, 0, 255)  # true division, half to even (as ORT)
    return (codes - zero_point) * scale


def cell_kl(hist: np.ndarray, lo_edge: float, hi_edge: float, scale: float, zero_point: int) -> float:
    """KL(P || Q): P the fine histogram, Q each code's mass spread evenly over its non-empty fine bins."""
    p = hist.astype(np.float64) / hist.sum()
    edges = np.linspace(lo_edge, hi_edge, hist.size + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    codes = np.clip(np.round(centres / scale) + zero_point, 0, 255).astype(np.int64)
    nonzero = p > 0
    mass = np.bincount(codes, weights=p, minlength=256)
    cells = np.bincount(codes, weights=nonzero.astype(np.float64), minlength=256)
    q = mass[codes] / np.maximum(cells[codes], 1.0)
    return float(np.sum(p[nonzero] * np.log(p[nonzero] / q[nonzero])))


def sqnr_db(signal: float, noise: float) -> float:
    return 10 * math.log10(signal / noise) if noise > 0 else math.inf


def measure_quality(folded: nn.Module, plans: dict[str, LayerPlan], batches: list[torch.Tensor],
                    ranges: dict[str, dict[str, tuple[float, float]]], extremes: dict[str, tuple[float, float]],
                    fine_bins: int) -> dict[str, dict[str, dict[str, float]]]:
    """Per tensor (quantizer `where`) and tool: KL and SQNR on the u8 grid over all calibration images."""
    grids = {where: {tool: u8_grid(*r[where]) for tool, r in ranges.items()} for where in extremes}
    hists = {where: torch.zeros(fine_bins, dtype=torch.float64) for where in extremes}
    signal = dict.fromkeys(extremes, 0.0)
    noise = {where: dict.fromkeys(ranges, 0.0) for where in extremes}

    def observe(where: str, x: torch.Tensor) -> None:
        if where not in extremes:
            return
        lo, hi = extremes[where]
        hists[where] += torch.histc(x[x != 0].float(), fine_bins, lo, hi).double()  # exact zeros: no error
        signal[where] += float(x.double().square().sum())
        for tool, (scale, zp) in grids[where].items():
            noise[where][tool] += float((x - fake_u8(x, scale, zp)).double().square().sum())

    handles = []
    for name, plan in plans.items():
        module = folded.get_submodule(name)

        def pre(mod, args, name=name):
            for i, a in enumerate(args):
                observe(f"{name} input {i}", a)

        handles.append(module.register_forward_pre_hook(pre))
        if plan.outputs is not None:
            handles.append(module.register_forward_hook(
                lambda mod, args, out, name=name: observe(f"{name} output", out)))
    try:
        with torch.no_grad():
            for x in batches:
                folded(x)
    finally:
        for h in handles:
            h.remove()
    result = {}
    for where, (lo, hi) in extremes.items():
        result[where] = {tool: {"kl": cell_kl(hists[where].numpy(), lo, hi, *grids[where][tool]),
                                "sqnr_db": sqnr_db(signal[where], noise[where][tool])} for tool in ranges}
    return result


def end_to_end_sqnr(qmodel: nn.Module, batches: list[torch.Tensor], reference: torch.Tensor,
                    ranges: dict[str, tuple[float, float]]) -> float:
    """Logit SQNR (dB) against float with every activation quantizer fixed to `ranges` (weights float)."""
    for _, wrapper in quant_wrappers(qmodel):
        for q in wrapper.activation_quantizers():
            lo, hi = ranges[q.where]
            q.fix(compute_qparams(q._example, q.spec.format, PerTensor(), min_val=torch.tensor(lo),
                                  max_val=torch.tensor(hi)))
    with torch.no_grad():
        logits = torch.cat([qmodel(x) for x in batches])
    return sqnr_db(float(reference.double().square().sum()), float((logits - reference).double().square().sum()))


# ---------------------------------------------------------------------------------------------- report

def fmt_range(r: tuple[float, float]) -> str:
    return f"[{r[0]:.3g}, {r[1]:.3g}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default="/tmp/quantlens-entropy-calibration")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for torch and for ORT's calibration session (1 by default: on a shared "
                             "2-core machine, 2 spinning OpenMP threads measure the neighbours)")
    parser.add_argument("--ort-quantized-bins", default="128,255")
    parser.add_argument("--fine-bins", type=int, default=8192)
    parser.add_argument("--quantlens-repeats", type=int, default=3)
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    ort_settings = [int(v) for v in args.ort_quantized_bins.split(",") if v]

    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=1000, in_channels=3, image_size=224).eval()
    folded = apply_pass("fold_bn", model).model.eval()
    images, data_note = cifar_images(args.images, 224)
    batches = list(images.split(args.batch))
    print(f"ResNet-18 224x224, random weights, BN folded; {data_note}; {len(batches)} batches of {args.batch}")

    with tempfile.TemporaryDirectory(prefix="quantlens-entropy-") as tmp:
        work = Path(tmp)
        onnx_path = export_onnx(folded, images[:8], work).path

        # Interleaved: quantlens before, between and after the ORT runs.
        quantlens_seconds, ort = [], {}
        qmodel = None
        for bins in [None, *ort_settings]:
            if bins is not None:
                ort[bins] = time_ort(onnx_path, batches, bins, work, args.threads)
                print(f"onnxruntime entropy (2048 bins, {bins} quantized bins): {ort[bins]['seconds']:.1f} s "
                      f"(setup {ort[bins]['setup_s']:.1f}, collect {ort[bins]['collect_s']:.1f}, "
                      f"compute {ort[bins]['compute_s']:.1f}) for {ort[bins]['tensors']} tensors")
            if len(quantlens_seconds) < args.quantlens_repeats:
                seconds, qmodel = time_quantlens(folded, batches)
                quantlens_seconds.append(seconds)
                print(f"quantlens entropy: {seconds:.2f} s")
        while len(quantlens_seconds) < args.quantlens_repeats:
            seconds, qmodel = time_quantlens(folded, batches)
            quantlens_seconds.append(seconds)
            print(f"quantlens entropy: {seconds:.2f} s")
        q_median = statistics.median(quantlens_seconds)
        breakdown = quantlens_breakdown(folded, batches, qmodel, q_median)
        q_ranges = quantlens_ranges(qmodel)
        extremes = {q.where: (float(q.observer.hist.min[0]), float(q.observer.hist.max[0]))
                    for _, w in quant_wrappers(qmodel) for q in w.activation_quantizers()}

        # Which ONNX tensor each quantizer calibrated.
        plans = entropy_plans(folded)
        probe = images[:1]
        first = ort[ort_settings[0]]
        matched = match_tensors(probe_quantlens(folded, plans, probe), first["calibrator"], probe,
                                set(first["ranges"]))
        for entry in ort.values():
            entry.pop("calibrator")

    unmatched_quantlens = sorted(set(q_ranges) - set(matched))
    unmatched_onnx = sorted(set(first["ranges"]) - set(matched.values()))
    ranges = {"quantlens": {w: q_ranges[w] for w in matched}}
    for bins, entry in ort.items():
        ranges[f"ort-{bins}"] = {w: entry["ranges"][name] for w, name in matched.items()}
    ranges["minmax"] = {w: extremes[w] for w in matched}
    quality = measure_quality(folded, plans, batches, ranges, {w: extremes[w] for w in matched}, args.fine_bins)

    with torch.no_grad():
        reference = torch.cat([folded(x) for x in batches])
    end_to_end = {}
    unmatched_fill = {w: q_ranges[w] for w in q_ranges}  # tensors ORT did not calibrate keep quantlens's range
    for tool, tool_ranges in ranges.items():
        end_to_end[tool] = end_to_end_sqnr(qmodel, batches, reference, {**unmatched_fill, **tool_ranges})

    # One row per distinct ONNX tensor (a tensor read by two layers has two quantizers, same range).
    rows, seen = [], set()
    for where, name in matched.items():
        if name in seen:
            continue
        seen.add(name)
        rows.append({"tensor": name, "quantizer": where, "min_max": extremes[where],
                     "never_negative": extremes[where][0] >= 0,
                     **{f"{tool}_range": ranges[tool][where] for tool in ranges},
                     **{f"{tool}_{m}": quality[where][tool][m] for tool in ranges for m in ("kl", "sqnr_db")}})

    summary = {"quantlens_seconds": quantlens_seconds, "quantlens_median_s": q_median,
               "quantlens_breakdown": breakdown,
               "quantlens_quantizers": len(q_ranges), "distinct_tensors_compared": len(rows)}
    for bins, entry in ort.items():
        tool = f"ort-{bins}"
        kl_ratio = [r["quantlens_kl"] / r[f"{tool}_kl"] for r in rows if r[f"{tool}_kl"] > 0]
        summary[tool] = {
            "seconds": entry["seconds"], "speedup_vs_quantlens_median": entry["seconds"] / q_median,
            "tensors_calibrated": entry["tensors"],
            "quantlens_kl_le_ort": sum(r["quantlens_kl"] <= r[f"{tool}_kl"] for r in rows),
            "median_kl_ratio_quantlens_over_ort": statistics.median(kl_ratio) if kl_ratio else None,
            "quantlens_sqnr_ge_ort": sum(r["quantlens_sqnr_db"] >= r[f"{tool}_sqnr_db"] for r in rows),
            "median_sqnr_gain_db": statistics.median(r["quantlens_sqnr_db"] - r[f"{tool}_sqnr_db"] for r in rows),
        }
    summary["end_to_end_logit_sqnr_db"] = end_to_end

    lines = [f"ResNet-18 224x224 (random weights, BN folded), {data_note}, batches of {args.batch}, "
             f"{args.threads} thread(s) for torch and ORT",
             f"quantlens entropy calibration: median {q_median:.2f} s of {len(quantlens_seconds)} runs "
             f"({', '.join(f'{s:.2f}' for s in quantlens_seconds)}), {len(q_ranges)} quantizers; of the median: "
             + ", ".join(f"{k[:-2].replace('_', ' ')} {v:.2f} s" for k, v in breakdown.items())]
    for bins in ort:
        s = summary[f"ort-{bins}"]
        lines.append(f"onnxruntime entropy 2048 bins / {bins} quantized bins: {s['seconds']:.1f} s "
                     f"({s['tensors_calibrated']} tensors) -> quantlens is {s['speedup_vs_quantlens_median']:.1f}x "
                     f"faster; "
                     f"quantlens KL <= ORT KL on {s['quantlens_kl_le_ort']}/{len(rows)} tensors "
                     f"(median KL ratio {s['median_kl_ratio_quantlens_over_ort']:.3g}); SQNR >= ORT on "
                     f"{s['quantlens_sqnr_ge_ort']}/{len(rows)} (median gain {s['median_sqnr_gain_db']:+.1f} dB)")
    lines.append("end-to-end logit SQNR, all activations u8-fake-quantized with each tool's ranges (weights float): "
                 + ", ".join(f"{tool} {v:.1f} dB" for tool, v in end_to_end.items()))
    if unmatched_quantlens or unmatched_onnx:
        lines.append(f"not compared: quantlens quantizers without an ONNX match {unmatched_quantlens}; "
                     f"ONNX tensors ORT calibrated that no quantizer reads {unmatched_onnx}")
    tools = list(ranges)
    header = f"{'tensor (quantlens quantizer)':44s} {'min..max':>16s} " + " ".join(
        f"{t + ' range':>17s} {'KL':>8s} {'SQNR':>6s}" for t in tools)
    lines += ["", "per tensor: range on the u8 grid, KL(P||Q) (lower is better), SQNR dB (higher is better)", header]
    for r in rows:
        cells = " ".join(f"{fmt_range(r[f'{t}_range']):>17s} {r[f'{t}_kl']:8.4f} {r[f'{t}_sqnr_db']:6.1f}"
                         for t in tools)
        lines.append(f"{r['quantizer'][:44]:44s} {fmt_range(r['min_max']):>16s} {cells}")
    text = "\n".join(lines)
    print(text)
    write_text(out / "table.txt", text + "\n")
    write_json(out / "entropy_calibration.json", {
        "what": __doc__.splitlines()[0], "model": "resnet18 (random init, BN folded)", "data": data_note,
        "images": args.images, "batch": args.batch, "threads": args.threads, "fine_bins": args.fine_bins,
        "ort_timings": {b: {k: v for k, v in e.items() if k != "ranges"} for b, e in ort.items()},
        "summary": summary, "tensors": rows, "matched": matched, "unmatched_quantlens": unmatched_quantlens,
        "unmatched_onnx": unmatched_onnx, "environment": capture_environment(seeds={"torch": 0})})
    print(f"wrote {out / 'entropy_calibration.json'}")


if __name__ == "__main__":
    main()
