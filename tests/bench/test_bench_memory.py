"""Process RSS, CUDA peak memory (when present), model file sizes, module bytes.

The peak-RSS logic is tested with scripted RSS and high-water-mark readers, and a call that waits
until the sampling thread has seen its peak, so no outcome depends on when the thread is scheduled.
The real-RSS test asserts only what holds under any load.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
import torch
from torch import nn

from quantlens.bench.memory import (
    cuda_available,
    current_rss_bytes,
    measure_peak_cuda_memory,
    measure_peak_rss,
    model_file_sizes,
    module_bytes,
    peak_rss_bytes,
)
from quantlens.errors import QuantlensError

MB = 1 << 20


def test_rss_figures_are_plausible():
    current = current_rss_bytes()
    assert current > 1 * MB
    assert peak_rss_bytes() >= current * 0.9  # ru_maxrss and /proc RSS count slightly differently


class ScriptedProcess:
    """RSS that a scripted call sets, and a high-water mark that rises only when told to.

    `hold(bytes)` raises the RSS and returns once the sampling thread has read it, so the sampled
    peak is certain whenever the thread gets to run; the wait is bounded only to turn a bug into a
    failure instead of a hang.
    """

    def __init__(self, rss: int, high_water_mark: int) -> None:
        self.rss = rss
        self.high_water_mark = high_water_mark
        self.sampler_reads: list[int] = []
        self._seen = threading.Event()
        self._held = 0
        self._caller = threading.get_ident()  # reads from any other thread are the sampler's

    def read_rss(self) -> int:
        if threading.get_ident() != self._caller:
            self.sampler_reads.append(self.rss)
            if self._held and self.rss == self._held:
                self._seen.set()
        return self.rss

    def read_peak(self) -> int:
        return self.high_water_mark

    def hold(self, rss: int) -> None:
        self._held, self.rss = rss, rss
        assert self._seen.wait(timeout=120.0), "the sampling thread never read the held RSS"


def test_peak_rss_of_a_call_below_the_lifetime_peak_is_the_sampled_one():
    process = ScriptedProcess(rss=100 * MB, high_water_mark=500 * MB)  # peaked higher earlier

    def allocate() -> str:
        process.hold(164 * MB)
        process.rss = 110 * MB  # freed most of it before returning
        return "done"

    threads_before = threading.active_count()
    result, peak = measure_peak_rss(allocate, read_rss=process.read_rss, read_peak=process.read_peak)
    assert result == "done"
    assert not peak.exact  # the kernel's mark did not move: only the sampler saw the peak
    assert (peak.baseline_bytes, peak.peak_bytes, peak.final_bytes) == (100 * MB, 164 * MB, 110 * MB)
    assert peak.increase_bytes == 64 * MB
    assert peak.samples_taken == len(process.sampler_reads) >= 1
    assert 164 * MB in process.sampler_reads
    assert threading.active_count() == threads_before  # the sampling thread is gone
    assert peak.to_dict()["increase_bytes"] == peak.increase_bytes


def test_peak_rss_of_a_call_that_raises_the_lifetime_peak_is_the_kernels():
    process = ScriptedProcess(rss=100 * MB, high_water_mark=120 * MB)

    def allocate() -> None:
        process.high_water_mark = 230 * MB  # a spike the 1 ms sampler missed; the kernel did not
        process.rss = 150 * MB

    _, peak = measure_peak_rss(allocate, read_rss=process.read_rss, read_peak=process.read_peak)
    assert peak.exact and peak.peak_bytes == 230 * MB and peak.increase_bytes == 130 * MB
    assert peak.final_bytes == 150 * MB


def test_peak_rss_is_never_below_the_readings_around_the_call():
    process = ScriptedProcess(rss=100 * MB, high_water_mark=500 * MB)

    def shrink() -> None:
        process.rss = 80 * MB  # the sampler may or may not have read the baseline: either way

    _, peak = measure_peak_rss(shrink, read_rss=process.read_rss, read_peak=process.read_peak)
    assert peak.peak_bytes == 100 * MB and peak.increase_bytes == 0 and peak.final_bytes == 80 * MB


def test_peak_rss_of_a_real_allocation():
    """Smoke test on this process's real RSS: the sampled figure depends on when the sampling
    thread runs, so only what holds under any load is asserted."""

    def allocate() -> int:
        block = np.ones(64 * MB // 8)  # written, so resident
        return int(block.size)

    threads_before = threading.active_count()
    result, peak = measure_peak_rss(allocate)
    assert result == 64 * MB // 8
    assert peak.peak_bytes >= max(peak.baseline_bytes, peak.final_bytes) > 0
    assert peak.samples_taken >= 1  # the thread reads once before it first checks for the stop
    assert threading.active_count() == threads_before
    if peak.exact:  # the call set a new lifetime mark: the kernel's figure, not a sample
        assert peak.increase_bytes >= 0.8 * 64 * MB


def test_peak_rss_stops_its_thread_when_the_call_fails():
    threads_before = threading.active_count()

    def broken() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        measure_peak_rss(broken)
    assert threading.active_count() == threads_before
    with pytest.raises(QuantlensError, match="interval_s"):
        measure_peak_rss(lambda: None, interval_s=0.0)


@pytest.mark.skipif(cuda_available(), reason="checks the CPU-only path")
def test_cuda_peak_is_none_without_cuda_and_the_call_still_runs():
    result, peak = measure_peak_cuda_memory(lambda: 7)
    assert (result, peak) == (7, None)


@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device")
def test_cuda_peak_counts_a_temporary_allocation():
    def allocate() -> float:
        block = torch.ones(16 * MB // 4, device="cuda")
        return float(block.sum())

    result, peak = measure_peak_cuda_memory(allocate)
    assert result == 16 * MB // 4
    assert peak is not None and peak.increase_bytes >= 16 * MB


def _tiny_onnx_model():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((64, 64), dtype=np.float32), name="w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [weight])
    return onnx, helper.make_model(graph)


def test_onnx_model_size_includes_its_external_data(tmp_path):
    onnx, model = _tiny_onnx_model()
    path = tmp_path / "model.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    sizes = model_file_sizes(path)
    data = tmp_path / "weights.bin"  # found from the model, not from a naming convention
    assert dict(sizes.files) == {str(path): path.stat().st_size, str(data): data.stat().st_size}
    assert sizes.total_bytes == path.stat().st_size + data.stat().st_size
    assert data.stat().st_size >= 64 * 64 * 4
    data.unlink()
    with pytest.raises(QuantlensError, match="does not exist"):
        model_file_sizes(path)


def test_onnx_size_falls_back_to_the_exporter_convention_without_onnx(tmp_path, monkeypatch):
    (tmp_path / "model.onnx").write_bytes(b"x" * 10)
    (tmp_path / "model.onnx.data").write_bytes(b"y" * 1000)
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    assert model_file_sizes(tmp_path / "model.onnx").total_bytes == 1010


def test_openvino_ir_size_includes_its_weights(tmp_path):
    (tmp_path / "model.xml").write_bytes(b"<net/>")
    (tmp_path / "model.bin").write_bytes(b"\0" * 500)
    assert model_file_sizes(tmp_path / "model.xml").total_bytes == 506
    with pytest.raises(QuantlensError, match="does not exist"):
        model_file_sizes(tmp_path / "absent.pt")


class TiedHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(10, 5)
        self.b = nn.Linear(10, 5)
        self.b.weight = self.a.weight  # tied: stored once
        self.bn = nn.BatchNorm1d(5)


def test_module_bytes_counts_parameters_and_buffers_once():
    sizes = module_bytes(TiedHeads())
    # weight 50 + two biases 5 + 5 + BN affine 5 + 5, float32
    assert sizes.parameter_count == 70
    assert sizes.parameter_bytes == 70 * 4
    # running_mean 5 + running_var 5 float32, num_batches_tracked one int64
    assert sizes.buffer_bytes == 10 * 4 + 8
    assert sizes.total_bytes == 70 * 4 + 48
    assert module_bytes(nn.Linear(10, 5).to(torch.float16)).parameter_bytes == 55 * 2
    with pytest.raises(QuantlensError, match="nn.Module"):
        module_bytes(object())
