"""The Python API, one call per job, on PyTorch data:

    import quantlens
    qmodel = quantlens.quantize(model, "int8", calibration_loader)     # -> calibrated fake-quant copy
    fp32, int8 = quantlens.evaluate(model, test_set), quantlens.evaluate(qmodel, test_set)
    quantlens.compare(fp32, int8)                                       # -> paired statistics
    quantlens.benchmark(model, ("torch-fp32", "ort-int8"), example=images)   # -> latency, speedups
    onnx_model = quantlens.load_onnx("net.onnx", example=images)          # -> its verified PyTorch form

Data is a torch Dataset, a DataLoader, a tensor of images or an iterable of batches, yielding `x`,
`(x, y, ...)` or dicts with an image key (`quantlens.api.data`). One module per function:
`ptq`, `evaluation`, `comparison`, `benchmarking`, `onnx`.
"""

from quantlens.api.benchmarking import BenchmarkResult, benchmark
from quantlens.api.comparison import ComparisonResult, compare
from quantlens.api.evaluation import EvaluationResult, evaluate
from quantlens.api.onnx import load_onnx
from quantlens.api.ptq import quantize

__all__ = ["BenchmarkResult", "ComparisonResult", "EvaluationResult", "benchmark", "compare", "evaluate",
           "load_onnx", "quantize"]
