"""OpenVINO-faithful simulation: the calibrated model as OpenVINO's CPU plugin executes its QDQ file.

OpenVINO does not run a QDQ file the way ONNX Runtime does (`faithful.py`). Its frontend turns
every QuantizeLinear into a FakeQuantize (FQ) with input range il = s * (0 - zp), ih = s * (255 - zp);
its low-precision transformations (LPT) keep the DequantizeLinear constants (s, zp) as pending
Subtract/Multiply ops, move them through precision-preserving ops (ReLU, Slice, Pad, ReduceMean,
Reshape) and fold them into the next FQ's range (il / s, ih / s) or into a convolution's per-channel
multiplier; the CPU plugin then fuses convolution + dequantization + bias + FQ (+ residual Add + FQ)
into one oneDNN primitive. This package replays that arithmetic on the file's own graph, in float32
exactly where OpenVINO works in float32:

  FQ node constants     isc = f32(255 / f32(ih - il)), ish = f32(f32(-il * 255) / f32(ih - il))
  standalone FQ         (a Snippets subgraph) codes = rint(f32(f32(clamp(x, il, ih) * isc) - f32(il * isc)))
  int8 conv / FC        u8 codes x s8 weights; without VNNI (AVX2 vpmaddubsw) the products of input
                        channels (2i, 2i+1) at one kernel position (FC: inputs 2i, 2i+1) are summed
                        with int16 saturation, then exactly; padding holds the zero-point code and
                        the input zero point is subtracted as zp * sum(w) after the sums
  conv output           t = f32(f32(acc * f32(s_x * s_w[oc])) + bias)            (f32 output: t)
  conv -> [ReLU] -> Q   zp = 0: dst scale, v = f32(t * f32(1 / f32(1 / isc)));  zp > 0: v = fma(t, isc, ish);
                        codes = clamp(rint(v), 0, 255)
  residual              conv -> Q1 -> DQ -> Add(., DQ(Q_sc codes)) -> [ReLU] -> Q2 runs as one primitive:
                        LPT rewrites the Add as s_sc * (r * (q1 - zp1') + q_sc) with r = f32(s1 / s_sc) folded
                        into Q1's output range; Q1 is *not rounded* when Q2 is fused too ("drop rounding one
                        special residual pattern" in the CPU plugin): u = clip(fma(t, f32(isc1 * osc1),
                        ish1'), lo, hi) with ish1' = 0 when |ish1'| < 1e-5 * (hi - lo); z = f32(u + q_sc);
                        Q2 uses the range il2 / s_sc, ih2 / s_sc (dst-scale form). Without a fused Q2 the
                        primitive outputs z (ReLU'd) in float, Q1 is rounded, and s_sc stays pending.
  ReduceMean            on codes, f32(sum / n); the pending scale moves into the next FQ's range

How it was established (OpenVINO 2026.4, AMD EPYC AVX2 without VNNI): tiny ONNX QDQ graphs with
chosen codes run on OpenVINO (1 thread, f32 hint); every formula above reproduced OpenVINO bit for
bit (int16 pairs: all 2556 weight pairs of a 16-channel 3x3 conv probed one by one; requantization:
every accumulator of a 1x1 conv in [-13005, 13005] x 64 channels x random scales, 0 mismatches in
25M codes; residual: 0 in 16.7M) while the alternatives tried (division, separate multiply-add,
rounding Q1, other zero-point shifts) did not. The transformed model OpenVINO compiles (read back
from its exported blob) showed the pattern and its constants: LPT keeps the DequantizeLinear's own
zp and s (80 of 80 random Q -> DQ -> ReLU -> Q chains), divides the next range by the pending scale,
and folds r and zp1' into Q1's output range; the whole-model check is pretrained ResNet-20 (BN folded,
max-calibrated, 2,000 CIFAR-10 images): logits equal OpenVINO's bit for bit with 8- and 7-bit weights.
What OpenVINO fused is read from its runtime graph (`openvino_runtime`), never assumed.

Also checked bit for bit on small graphs: ReLU before a Q with zp > 0 (a real ReLU post-op, then
fma), and ReduceMean = f32(sum / n) for n = 9 ... 169 (powers of two or not).

Not verified (modelled by the same rules, listed in `notes`): per-channel FQs, a standalone FQ run as
a FakeQuantize node, convolutions without bias in the residual pattern (2 of 3.1M codes differed in
a test), an Add OpenVINO leaves unfused (run in float here), CPUs with VNNI/AVX-512 (no saturation is
assumed there; their kernels were not available). Refused (BackendError): signed (s8) activations,
grouped or per-channel-input convolutions, convolutions OpenVINO ran in float (e.g. its strided 1x1
brgconv_avx2_1x1_f32), quantizers OpenVINO folds elsewhere (a Q -> DQ pair at the graph's output),
ops not listed here. fma is emulated in float64 then rounded once to float32 (a double rounding is
possible, about 2^-29 per operation).
"""

from quantlens.backends.qdq.openvino_faithful.accumulators import conv_accumulator, linear_accumulator
from quantlens.backends.qdq.openvino_faithful.fake_quant import FqRange, ResidualFq, requantize, standalone_fq
from quantlens.backends.qdq.openvino_faithful.model import (
    OpenVinoFaithfulModel,
    check_file_matches,
    openvino_faithful_model,
)
from quantlens.backends.qdq.openvino_faithful.runtime import ExecutedNode, OpenVinoRuntime, openvino_runtime

__all__ = ["ExecutedNode", "FqRange", "OpenVinoFaithfulModel", "OpenVinoRuntime", "ResidualFq", "check_file_matches",
           "conv_accumulator", "linear_accumulator", "openvino_faithful_model", "openvino_runtime", "requantize",
           "standalone_fq"]
