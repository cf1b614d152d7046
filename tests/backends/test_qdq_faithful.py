"""Deployment-faithful simulation: on ResNet-20 with randomised calibrated scales it reproduces ONNX
Runtime's QDQ execution bit for bit (QLinearConv, QLinearAdd, QGemm and the layers left in float),
while the ordinary fake-quant simulation does not; QuantizeLinear divides, quantlens multiplies."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from test_qdq_export import resnet20_qmodel, small_qmodel  # noqa: E402

from quantlens.backends.qdq import (  # noqa: E402
    OrtQdqRunner,
    export_qdq,
    faithful_model,
    ort_fusion,
    quantize_divide,
)
from quantlens.nn.convert import quant_wrappers  # noqa: E402
from quantlens.scaling import PerTensor, QuantParams, fake_quantize  # noqa: E402


def randomize_scales(qmodel, seed: int = 0) -> None:
    """Multiply every activation scale by a seeded factor in [0.5, 1.5]; quantizers that shared a
    tensor's params (same scale and zero point) keep sharing them, zero points are unchanged."""
    g = torch.Generator().manual_seed(seed)
    factors: dict[tuple[float, int], torch.Tensor] = {}
    for _, wrapper in quant_wrappers(qmodel):
        for q in wrapper.activation_quantizers():
            key = (float(q.params.scale.reshape(-1)[0]), int(q.params.zero_point.reshape(-1)[0]))
            factor = factors.setdefault(key, 0.5 + torch.rand((), generator=g))
            q.fix(replace(q.params, scale=(q.params.scale * factor).to(torch.float32)))


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    qmodel, x = resnet20_qmodel()
    randomize_scales(qmodel)
    result = export_qdq(qmodel, x, tmp_path_factory.mktemp("qdq") / "resnet20.onnx")
    return qmodel, result


def test_resnet20_shares_one_qdq_pair_per_tensor_and_fuses_all_19_convs(resnet):
    _, result = resnet
    # 38 quantizers (20 conv/linear inputs, 18 add inputs); the 7 identity shortcuts quantize the same
    # tensor as the next block's conv1 with identical params: one pair each
    assert result.quantize_nodes == 31 and result.shared_pairs == 7
    assert sum(len(w) for w in result.q_nodes.values()) == 38
    assert result.int8_weights == 20 and result.int32_biases == 20
    fusion = ort_fusion(result.path)
    convs = [f for f in fusion.layers if f.kind == "Conv2d"]
    assert len(convs) == 19 and all(f.runtime_op == "QLinearConv" for f in convs)
    assert fusion.op_counts.get("Conv", 0) == 0
    # adds whose output reaches one Q through ReLU run as QLinearAdd; the 3 feeding a shortcut stay float
    adds = {f.layer: f.runtime_op for f in fusion.layers if f.kind == "Add"}
    assert sorted(op for op in adds.values()) == ["Add"] * 3 + ["QLinearAdd"] * 6


def test_faithful_simulation_equals_onnx_runtime_bit_for_bit_and_fake_quant_does_not(resnet):
    qmodel, result = resnet
    faithful = faithful_model(qmodel, result.path, precise=True)
    assert {r.op for r in faithful.requant.values()} == {"QLinearConv", "QLinearAdd", "QGemm"}
    torch.manual_seed(2)
    x = torch.randn(24, 3, 32, 32)
    runner = OrtQdqRunner(result.path, precise=True)
    deployed = np.concatenate([runner.run(b) for b in x.split(3)])
    with torch.no_grad():  # batches of 3: see resnet20_qmodel
        exact = np.concatenate([faithful(b).numpy() for b in x.split(3)])
        simulated = np.concatenate([qmodel(b).numpy() for b in x.split(3)])
    np.testing.assert_array_equal(exact, deployed)
    assert (simulated != deployed).mean() > 0.5  # the ordinary simulation is close, never bit-exact


def test_small_cnn_float_conv_stays_float_and_the_rest_is_exact(tmp_path):
    # c2 feeds an average pool, not a Q: ONNX Runtime runs it in float (its own summation order), so
    # only codes downstream of it may differ, by one code at most, on rare near-ties
    qmodel, x = small_qmodel(seed=3)
    randomize_scales(qmodel, seed=3)
    result = export_qdq(qmodel, x, tmp_path / "small.onnx")
    faithful = faithful_model(qmodel, result.path, precise=True)
    assert set(faithful.requant) == {"c1", "fc"}
    torch.manual_seed(4)
    batch = torch.randn(64, 3, 16, 16)
    deployed = OrtQdqRunner(result.path, precise=True).run(batch)
    with torch.no_grad():
        exact = faithful(batch).numpy()
        simulated = qmodel(batch).numpy()
    assert (exact != deployed).mean() <= 0.05 < (simulated != deployed).mean()
    assert (exact.argmax(1) == deployed.argmax(1)).all()


def test_quantize_linear_divides_where_quantlens_multiplies_by_the_reciprocal():
    # near-ties: x / s and x * (1 / s) round to different integers for some x
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor(0.1, dtype=torch.float32)
    k = torch.randint(-100, 100, (100_000,), generator=g).float()
    x = ((k + 0.5) * scale).to(torch.float32)
    x = torch.nextafter(x, x + torch.sign(torch.randn(x.shape, generator=g)))
    zp = torch.tensor(0, dtype=torch.int8)
    ours = quantize_divide(x, scale, zp)
    expected = np.clip(np.rint(x.numpy() / np.float32(0.1)), -128, 127)
    np.testing.assert_array_equal(ours.numpy(), expected)
    params = QuantParams(scale.reshape(1), torch.zeros(1, dtype=torch.int32), torch.ones(()), PerTensor())
    multiplied = fake_quantize(x, "int8", params) / scale
    assert (torch.round(multiplied) != ours).any()
