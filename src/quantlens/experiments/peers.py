"""Peers: other tools' own INT8 post-training quantization of the experiment's model, calibrated on
the same samples and evaluated on the same samples as quantlens's simulated recipes.

Each peer takes the FP32 model and a list of calibration batches and returns a forward function
(float32 (B, C, H, W) -> logits), the files it wrote and the settings it used:

* `ort_minmax`, `ort_entropy`, `ort_percentile`: ONNX Runtime `quantize_static` (QDQ, u8 activations,
  per-channel s8 weights) on the verified FP32 ONNX export. `quantize_static` forwards no bin count
  to its calibrator: asked for Entropy it keeps 128 bins and gives min-max ranges. So ranges are
  computed here with ONNX Runtime's own `create_calibrator` (Entropy: 2048 bins, 128 quantized
  bins; Percentile: 2048 bins, 99.999, ONNX Runtime's defaults) and handed to `quantize_static`
  through its calibration cache; the bin counts recorded are read back from the calibrator. On
  CPUs without VNNI/AMX-INT8, weights are 7-bit (`reduce_range`), as ONNX Runtime advises, because
  its AVX2 u8 x s8 kernels add pairs of products in saturating int16 lanes.
* `nncf`: `nncf.quantize` (default preset) of the same export, run by OpenVINO with inference
  precision f32 (its default is BF16 on CPUs with AMX/AVX512-BF16).
* `torch_x86`: torch's FX static PTQ with the x86 default QConfigMapping (the `torch-int8` backend);
  torch.ao's deprecation warnings are kept out of the user's output.

A peer that fails (package missing, exporter error) is recorded as "not run: <reason>" with a
warning event; the others still run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from quantlens import events
from quantlens.atomic import write_json
from quantlens.backends.base import RunnerInfo, Target, cpu_has_int8_dot_product, get_backend
from quantlens.backends.onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx
from quantlens.backends.onnxruntime import CPU, _calibration_reader, make_session
from quantlens.data import PreparedData
from quantlens.errors import describe
from quantlens.experiments.record import RunRecord
from quantlens.experiments.simulation import SUMMARY_KEYS, calibration_choice
from quantlens.experiments.spec import ExperimentSpec
from quantlens.metrics.classification import Predictions, classification_metrics
from quantlens.metrics.paired import paired_comparison
from quantlens.train.predict import predict_with

DEFAULT_CALIBRATION_SAMPLES = 512  # quantization entries' default `calibration_samples`
DEFAULT_CALIBRATION_BATCH = 32
ENTROPY_BINS, ENTROPY_QUANTIZED_BINS = 2048, 128
PERCENTILE_BINS, PERCENTILE = 2048, 99.999


@dataclass(frozen=True)
class PeerJob:
    """What a peer quantizes: the FP32 model, calibration batches (float32 (B, C, H, W)), its own
    folder (`peers/<name>/`), the folder whose `onnx/` holds the shared FP32 export, and threads."""

    model: nn.Module
    batches: list[torch.Tensor]
    folder: Path
    export_dir: Path
    threads: int


@dataclass
class PeerModel:
    """A peer's quantized model: its forward (float32 batch -> logits), the files it wrote (model
    size on disk), the settings used and the tool with its version."""

    forward: Callable[[torch.Tensor], object]
    files: tuple[Path, ...]
    settings: dict
    tool: str


@dataclass(frozen=True)
class PeerCalibration:
    """The calibration samples every peer sees, and where they come from (one line)."""

    indices: np.ndarray
    batch_size: int
    source: str


def peer_calibration(spec: ExperimentSpec, calib_idx: np.ndarray) -> PeerCalibration:
    """The samples of the `quantization:` entry asking for the most (the first of equals), chosen as
    that entry chooses them, so a peer sees the same images as that recipe; without entries, the
    first 512 calibration samples."""
    if not spec.quantization:
        chosen = calib_idx[:DEFAULT_CALIBRATION_SAMPLES]
        return PeerCalibration(chosen, DEFAULT_CALIBRATION_BATCH,
                               f"the first {len(chosen)} of the run's {len(calib_idx)} calibration samples")
    index, cfg = max(enumerate(spec.quantization), key=lambda pair: pair[1].calibration_samples)
    chosen = calibration_choice(calib_idx, cfg)
    how = "all" if len(chosen) == len(calib_idx) else f"drawn with calibration_seed {cfg.calibration_seed}"
    return PeerCalibration(chosen, cfg.calibration_batch_size,
                           f"the calibration samples of quantization.{index} ({cfg.label}): {len(chosen)} of "
                           f"the run's {len(calib_idx)} ({how})")


def _reduce_range() -> tuple[bool, str]:
    if cpu_has_int8_dot_product():
        return False, "8-bit weights: this CPU has VNNI/AMX-INT8 (no int16 saturation)"
    return True, ("7-bit weights (reduce_range): this CPU has no VNNI/AMX-INT8, and ONNX Runtime's AVX2 u8 x s8 "
                  "kernels can saturate int16 lanes with 8-bit weights")


@contextlib.contextmanager
def _quiet_calibrator() -> Iterator[None]:
    """ONNX Runtime's histogram calibrators print their settings to stdout; the library never prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


# The calibrator attributes that decide each method's ranges, read back after it is built.
_HELD_SETTINGS = {"MinMax": ("symmetric", "moving_average"), "Entropy": ("num_bins", "num_quantized_bins", "symmetric"),
                  "Percentile": ("num_bins", "percentile", "symmetric")}


def equal_batches(batches: list[torch.Tensor]) -> list[torch.Tensor]:
    """The same samples in batches of one size: ONNX Runtime's histogram calibrators stack each tensor's
    outputs across batches with numpy, which fails on a short last batch ("inhomogeneous shape").
    The size is the largest divisor of the sample count not above the first batch's size."""
    x = torch.cat(batches)
    size = max(d for d in range(1, len(batches[0]) + 1) if len(x) % d == 0)
    return list(x.split(size))


def ort_quantize(source: Path, target: Path, batches: list[torch.Tensor], method: str, options: dict,
                 reduce_range: bool) -> tuple[dict[str, list[float]], dict]:
    """`source` (FP32 ONNX) -> QDQ INT8 `target` with ranges from ONNX Runtime's own calibrator
    `method` ("MinMax", "Entropy", "Percentile") built with `options` (its `extra_options`).
    Returns each calibrated tensor's (low, high) range and the calibrator's settings as it holds them."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, create_calibrator, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calibrate_method = CalibrationMethod[method]
    with tempfile.TemporaryDirectory(prefix="quantlens-peer-") as tmp:
        prepared, cache = Path(tmp) / "preprocessed.onnx", Path(tmp) / "ranges.json"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))  # what quantize_static calibrates
        calibrator = create_calibrator(prepared, op_types, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=calibrate_method, extra_options=options)
        with _quiet_calibrator():
            calibrator.collect_data(_calibration_reader(equal_batches(batches)))
            ranges = calibrator.compute_data()
        held = {key: getattr(calibrator, key) for key in _HELD_SETTINGS[method] if hasattr(calibrator, key)}
        del calibrator
        save_tensors_data(ranges, cache)
        quantize_static(str(prepared), str(target), None, quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        reduce_range=reduce_range, calibrate_method=calibrate_method, calibration_cache_path=cache)
    bounds = {name: [float(np.min(data.range_value[0])), float(np.max(data.range_value[1]))]
              for name, data in ranges.items()}
    return bounds, held


_ORT_METHODS = {
    "ort_minmax": ("MinMax", {}),
    "ort_entropy": ("Entropy", {"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS}),
    "ort_percentile": ("Percentile", {"num_bins": PERCENTILE_BINS, "percentile": PERCENTILE}),
}


def _ort_peer(name: str) -> Callable[[PeerJob], PeerModel]:
    method, options = _ORT_METHODS[name]

    def quantize(job: PeerJob) -> PeerModel:
        import onnxruntime

        export = export_onnx(job.model, job.batches[0], job.export_dir, backend=f"peer {name}")
        reduce_range, why = _reduce_range()
        target = job.folder / "model.onnx"
        target.parent.mkdir(parents=True, exist_ok=True)
        bounds, held = ort_quantize(export.path, target, job.batches, method, options, reduce_range)
        write_json(job.folder / "ranges.json", bounds)
        session = make_session(target, job.threads, [CPU])
        settings = {"tool_call": "onnxruntime.quantization.quantize_static (QDQ) with ranges from create_calibrator",
                    "calibration_method": method, "calibrator_options": options, "calibrator_held": held,
                    "activation_type": "uint8 (asymmetric, per-tensor)", "weight_type": "int8 (symmetric)",
                    "per_channel": True, "reduce_range": reduce_range, "reduce_range_reason": why,
                    "description": _ort_description(method, held, reduce_range)}
        return PeerModel(lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0], (target,), settings,
                         f"onnxruntime {onnxruntime.__version__}")

    return quantize


def _ort_description(method: str, held: dict, reduce_range: bool) -> str:
    detail = {"Entropy": f" {held.get('num_bins')} bins/{held.get('num_quantized_bins')} quantized",
              "Percentile": f" {held.get('percentile')}, {held.get('num_bins')} bins"}.get(method, "")
    weights = "s8 per-channel, 7-bit" if reduce_range else "s8 per-channel"
    return f"ORT QDQ {method}{detail}; act u8, w {weights}"


def _nncf_peer(job: PeerJob) -> PeerModel:
    import nncf
    import openvino as ov

    from quantlens.backends.openvino import OpenVinoRunner

    backend = get_backend("openvino-int8")
    backend.require_available()
    export = export_onnx(job.model, job.batches[0], job.export_dir, backend="peer nncf")
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF draws its own progress bar on stdout
        quantized = backend._quantize(ov.Core().read_model(str(export.path)), job.batches)
    xml = job.folder / "model.xml"
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": job.threads, "NUM_STREAMS": 1}
    runner = OpenVinoRunner(quantized, config, RunnerInfo("nncf", "int8", "int8", "cpu", "", job.threads))
    hint = runner.compiled_precision(tuple(job.batches[0].shape))
    images = sum(int(b.shape[0]) for b in job.batches)
    settings = {"tool_call": "nncf.quantize(ov_model, nncf.Dataset(one image per item), subset_size=n)",
                "preset": "nncf default (performance: symmetric int8 activations and weights)",
                "weights": "int8 symmetric per-channel", "activations": "int8 symmetric per-tensor",
                "bias_correction": "fast (nncf default)", "subset_size": images,
                "inference_precision_hint": "f32", "compiled_precision": hint,
                "description": f"nncf.quantize default preset, subset {images}; OpenVINO f32 hint (compiled {hint})"}
    return PeerModel(runner.run, (xml, xml.with_suffix(".bin")), settings,
                     f"nncf {nncf.__version__}, openvino {ov.__version__}")


@contextlib.contextmanager
def _quiet_torch_ao() -> Iterator[None]:
    """torch.ao.quantization warns that it is deprecated in favour of torchao: true, and not the user's news."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*reduce_range will be deprecated.*")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        yield


def _torch_qconfig() -> dict:
    """The x86 default QConfig's observers, read back rather than assumed."""
    with _quiet_torch_ao():
        from torch.ao.quantization import get_default_qconfig_mapping

        qconfig = get_default_qconfig_mapping("x86").global_qconfig
        act, weight = qconfig.activation(), qconfig.weight()
    return {"activation_observer": type(act).__name__, "activation_dtype": str(act.dtype),
            "activation_reduce_range": bool(getattr(act, "reduce_range", False)),
            "weight_observer": type(weight).__name__, "weight_dtype": str(weight.dtype),
            "weight_qscheme": str(weight.qscheme)}


def _torch_peer(job: PeerJob) -> PeerModel:
    with _quiet_torch_ao():
        runner = get_backend("torch-int8").prepare(job.model, job.batches[0], job.batches, job.folder,
                                                   Target(threads=job.threads))
    observers = _torch_qconfig()
    act = "u8 7-bit" if observers["activation_reduce_range"] else "u8"
    settings = {"tool_call": "torch.ao.quantization.quantize_fx prepare_fx/convert_fx, "
                             "get_default_qconfig_mapping('x86')", "engine": "x86", **observers,
                "per_channel": "per_channel" in observers["weight_qscheme"],
                "float_ops": list(runner.info.float_ops),
                "description": f"torch FX x86 default qconfig; act {act} {observers['activation_observer']}, "
                               f"w s8 per-channel"}

    def forward(x: torch.Tensor) -> torch.Tensor:
        with _quiet_torch_ao():
            return runner.run(x)

    return PeerModel(forward, tuple(Path(f) for f in runner.info.model_files), settings, f"torch {torch.__version__}")


PEERS: dict[str, Callable[[PeerJob], PeerModel]] = {
    **{name: _ort_peer(name) for name in _ORT_METHODS}, "nncf": _nncf_peer, "torch_x86": _torch_peer}


def _file_record(path: Path, run_dir: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    where = path.relative_to(run_dir) if path.is_relative_to(run_dir) else path
    return {"path": str(where), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def not_run(name: str, reason: str, calibration: int) -> dict:
    """The row of a peer that did not run; the reason on one line."""
    return {"name": name, "status": f"not run: {' '.join(reason.split())}", "calibration_samples": calibration}


def run_peer(name: str, job: PeerJob, data: PreparedData, spec: ExperimentSpec, eval_idx: np.ndarray,
             reference: Predictions, record: RunRecord) -> dict:
    """One peer quantized, evaluated on `eval_idx` and paired with FP32's `reference`; its files in
    peers/<name>/ (predictions.npz, metrics.json, the model). Returns its summary row (fractions)."""
    start = time.perf_counter()
    peer = PEERS[name](job)
    seconds = time.perf_counter() - start
    predictions = predict_with(peer.forward, data, eval_idx, spec.eval.batch_size,
                               description=f"evaluating peer {name}")
    predictions.save(record.path(f"peers/{name}/predictions.npz"))
    metrics = classification_metrics(predictions, data.source.class_names, positive_class=spec.eval.positive_class,
                                     ece_bins=spec.eval.ece_bins)
    paired = paired_comparison(reference, predictions, confidence=spec.analysis.confidence,
                               positive_class=spec.eval.positive_class)
    files = [_file_record(path, record.dir) for path in peer.files]
    record.write_json(f"peers/{name}/metrics.json", {"name": name, **metrics, "paired_vs_fp32": paired})
    calibrated = sum(int(b.shape[0]) for b in job.batches)
    record.write_json(f"peers/{name}/settings.json", {"tool": peer.tool, "calibration_samples": calibrated,
                                                      **peer.settings})
    events.note(f"peer {name}: top1 {metrics['top1']:.4f} (FP32 {reference.correct.mean():.4f})")
    return {"name": name, "status": "ok", "tool": peer.tool, "folder": f"peers/{name}", "n": paired["n"],
            **{key: metrics.get(key) for key in SUMMARY_KEYS}, "unit": paired["unit"],
            "confidence": paired["confidence"], "top1_delta": paired["top1_delta"],
            "top1_delta_ci": paired["top1_delta_ci"], "mcnemar_p": paired["mcnemar_p"],
            "mcnemar_midp": paired["mcnemar_midp"], "prediction_agreement": paired["prediction_agreement"],
            "deltas": paired["deltas"], "model_bytes": sum(f["bytes"] for f in files), "files": files,
            "settings": peer.settings, "calibration_samples": calibrated, "quantize_seconds": seconds}


def run_peers(spec: ExperimentSpec, model: nn.Module, data: PreparedData, eval_idx: np.ndarray,
              calibration: PeerCalibration, reference: Predictions, record: RunRecord, threads: int) -> list[dict]:
    """Every peer of `spec.peers`, in order, each on `calibration`'s samples; a failure is a row."""
    batches = [x.float() for x, _, _ in data.batches(calibration.indices, calibration.batch_size)]
    n = len(calibration.indices)
    rows = []
    with events.task("peer quantizers", total=len(spec.peers), unit="peers") as progress:
        for name in spec.peers:
            job = PeerJob(model, batches, record.path(f"peers/{name}"), record.path("peers"), threads)
            try:
                rows.append(run_peer(name, job, data, spec, eval_idx, reference, record))
            except Exception as error:  # noqa: BLE001  (one peer's failure is its row, not the run's end)
                reason = describe(error)
                events.warn(f"peer {name} not run: {reason}")
                rows.append(not_run(name, reason, n))
            progress.advance()
    return rows
