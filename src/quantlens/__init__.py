"""quantlens: which precision should an image classifier run in, and what does it cost?

    import quantlens
    quantlens.quantize(model, recipe, calibration_data)     # -> the calibrated fake-quant model
    quantlens.evaluate(model, data)                         # -> EvaluationResult
    quantlens.compare(result_a, result_b)                   # -> ComparisonResult (paired statistics)
    quantlens.benchmark(model, backends, example=images)    # -> BenchmarkResult (latency, speedups)
    quantlens.load_onnx(path, example=images)               # -> an ONNX file's verified PyTorch form

The API lives in `quantlens.api` and is imported on first use, so `import quantlens` stays cheap
(the command line imports it before every command).
"""

from __future__ import annotations

# Not `typing.TYPE_CHECKING`: importing typing (~10 ms here) would cost several times `import quantlens` itself.
TYPE_CHECKING = False
if TYPE_CHECKING:  # for type checkers and editors; at run time `__getattr__` imports them on first use
    from typing import Any

    from quantlens.api import (
        BenchmarkResult,
        ComparisonResult,
        EvaluationResult,
        benchmark,
        compare,
        evaluate,
        load_onnx,
        quantize,
    )

__version__ = "0.1.0"

__all__ = ["BenchmarkResult", "ComparisonResult", "EvaluationResult", "__version__", "benchmark", "compare",
           "evaluate", "load_onnx", "quantize"]
_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from quantlens import api  # noqa: PLC0415  (torch and the metrics load on first use only)

        value = getattr(api, name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'quantlens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
