"""The README's `### Python API` examples run as written: every ```python block of that section, in
order, in one namespace (a later block uses what an earlier one defined)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from torch import nn

from quantlens.api import BenchmarkResult, ComparisonResult, EvaluationResult
from quantlens.nn import QuantWrapper

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "### Python API"
_HEADING = re.compile(r"#{1,6} ")


def section_blocks(text: str, heading: str = SECTION) -> list[str]:
    """The ```python blocks between `heading` and the next heading (headings inside code fences,
    i.e. shell comments, do not count)."""
    lines = text.splitlines()
    try:
        start = lines.index(heading)
    except ValueError:
        raise AssertionError(f"README.md has no line {heading!r}") from None
    blocks: list[str] = []
    current: list[str] | None = None
    fence = False
    for line in lines[start + 1:]:
        if line.startswith("```"):
            if not fence and line.strip() == "```python":
                current = []
            elif fence and current is not None:
                blocks.append("\n".join(current) + "\n")
                current = None
            fence = not fence
        elif fence:
            if current is not None:
                current.append(line)
        elif _HEADING.match(line):
            break
    return blocks


BLOCKS = section_blocks(README.read_text(encoding="utf-8"))


class Namespace:
    """The shared globals of the examples; blocks run once each, in order, on demand."""

    def __init__(self) -> None:
        self.globals: dict = {"__name__": "readme_example"}
        self.ran = 0
        self.output: list[str] = []

    def run_through(self, index: int) -> str:
        while self.ran <= index:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(BLOCKS[self.ran], f"README.md ({SECTION}, python block {self.ran + 1})", "exec"),
                     self.globals)
            self.output.append(out.getvalue())
            self.ran += 1
        return self.output[index]


@pytest.fixture(scope="module")
def namespace() -> Namespace:
    return Namespace()


def test_the_section_has_the_examples_the_issue_asks_for():
    code = "\n".join(BLOCKS)
    assert len(BLOCKS) >= 4
    for call in ("quantlens.quantize(", "quantlens.evaluate(", "quantlens.compare(", "quantlens.benchmark("):
        assert call in code
    # quantize with a DataLoader of (x, y) batches (TensorDataset(images, labels))
    assert re.search(r"quantlens\.quantize\(model, \"int8\", DataLoader\(train, batch_size=\d+\)\)", code)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(namespace, index):
    printed = namespace.run_through(index)
    g = namespace.globals
    if "quantlens.quantize(model, \"int8\", DataLoader(train" in BLOCKS[index]:
        assert any(isinstance(m, QuantWrapper) for m in g["int8"].modules())
        assert isinstance(g["fp32_result"], EvaluationResult) and g["fp32_result"].n == len(g["test"])
        assert isinstance(g["paired"], ComparisonResult) and g["paired"].n == len(g["test"])
        assert g["fp32_result"].metrics.top1 > 0.85  # the trained CNN is a real digit classifier
        assert "points [95% CI" in printed
    if "quantlens.benchmark(" in BLOCKS[index]:
        assert isinstance(g["speed"], BenchmarkResult)
        assert g["speed"].latency("ort-int8", 1).median > 0
        assert "ms at batch 1" in printed
    if "quantlens.load_onnx(" in BLOCKS[index]:  # the same model through ONNX: same predictions, one softmax
        assert g["same"].agreement == 1.0
        fp32, onnx = g["fp32_result"].metrics, g["onnx_result"].metrics
        assert abs(fp32.mean_confidence - onnx.mean_confidence) < 1e-4 and fp32.top1 == onnx.top1
        assert any(isinstance(m, QuantWrapper) for m in g["int8_onnx"].modules())
    if "except QuantlensError" in BLOCKS[index]:
        assert "calibration_data yields str; expected a tensor batch" in printed
    assert all(not isinstance(v, nn.Module) or not v.training for k, v in g.items() if k in ("model", "int8"))
