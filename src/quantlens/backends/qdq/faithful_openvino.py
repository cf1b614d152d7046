"""OpenVINO-faithful simulation: the calibrated model as OpenVINO's CPU plugin executes its QDQ file.

OpenVINO does not run a QDQ file the way ONNX Runtime does (`faithful.py`). Its frontend turns
every QuantizeLinear into a FakeQuantize (FQ) with input range il = s * (0 - zp), ih = s * (255 - zp);
its low-precision transformations (LPT) keep the DequantizeLinear constants (s, zp) as pending
Subtract/Multiply ops, move them through precision-preserving ops (ReLU, Slice, Pad, ReduceMean,
Reshape) and fold them into the next FQ's range (il / s, ih / s) or into a convolution's per-channel
multiplier; the CPU plugin then fuses convolution + dequantization + bias + FQ (+ residual Add + FQ)
into one oneDNN primitive. This module replays that arithmetic on the file's own graph, in float32
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

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from quantlens.backends.base import BackendError, cpu_has_int8_dot_product
from quantlens.backends.qdq import graph as g
from quantlens.backends.qdq.deploy import activation_codec
from quantlens.backends.qdq.export import read_layer_map
from quantlens.nn.convert import quant_wrappers

f32 = np.float32
_I16 = 32767.0
_PASS_THROUGH = ("Reshape", "Flatten", "Identity", "Squeeze", "Unsqueeze")


# --- what OpenVINO executed ----------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutedNode:
    """One node of OpenVINO's runtime graph: its op, kernel, precisions and the ONNX nodes it absorbed."""

    name: str
    layer_type: str
    primitive: str
    precision: str
    output_precision: str
    originals: tuple[str, ...]

    def holds(self, onnx_node) -> bool:
        """Whether this node executes `onnx_node` (an ONNX NodeProto or a node name): OpenVINO keeps the
        node's name (or adds '/...' to it), or names it after its output tensor (a Gemm -> 'logits')."""
        names = [onnx_node] if isinstance(onnx_node, str) else [onnx_node.name, *onnx_node.output]
        return any(o == n or o.startswith(f"{n}/") for o in self.originals for n in names if n)


@dataclass(frozen=True)
class OpenVinoRuntime:
    """The runtime graph OpenVINO's CPU plugin compiled a QDQ file into (f32 hint, one input shape)."""

    nodes: tuple[ExecutedNode, ...]

    def executing(self, onnx_node) -> ExecutedNode | None:
        """The compute node that executes `onnx_node` (by its name first, then by its output's name)."""
        compute = [n for n in self.nodes if n.layer_type not in ("Input", "Output", "Reorder", "Const")]
        names = [onnx_node] if isinstance(onnx_node, str) else [onnx_node.name, *onnx_node.output]
        for name in names:
            found = next((n for n in compute if n.holds(name)), None)
            if found is not None:
                return found
        return None

    def to_dict(self) -> dict:
        return {"nodes": [vars(n) for n in self.nodes]}


def openvino_runtime(path: str | Path, shape: tuple[int, ...] | None = None) -> OpenVinoRuntime:
    """Compile the QDQ file on OpenVINO CPU (as `OpenVinoQdqRunner` does) and read its runtime graph."""
    import onnx

    from quantlens.backends.qdq.runners import OpenVinoQdqRunner

    if shape is None:
        dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
        shape = (1, *[d.dim_value or 1 for d in dims[1:]])
    nodes = []
    for op in OpenVinoQdqRunner(path).runtime_model(tuple(shape)).get_ops():
        info = op.get_rt_info()
        get = lambda key, info=info: str(info[key].astype(str)) if key in info else ""  # noqa: E731
        originals = tuple(o.strip() for o in get("originalLayersNames").split(",") if o.strip())
        nodes.append(ExecutedNode(op.get_friendly_name(), get("layerType"), get("primitiveType"),
                                  get("runtimePrecision"), get("outputPrecisions"), originals))
    return OpenVinoRuntime(tuple(nodes))


# --- float32 arithmetic as OpenVINO does it --------------------------------------------------------


def _fma(a: torch.Tensor, b, c) -> torch.Tensor:
    """float32 fused multiply-add: the exact a * b + c (float64) rounded once to float32."""
    return (a.double() * torch.as_tensor(b, dtype=torch.float64) + torch.as_tensor(c, dtype=torch.float64)).float()


def _rhte(x):
    return np.rint(f32(x)).astype(f32)


@dataclass(frozen=True)
class FqRange:
    """A FakeQuantize input range (scalars, or (C,) arrays along the channel axis) with u8 output."""

    il: np.ndarray
    ih: np.ndarray

    @classmethod
    def of_quantizer(cls, scale: np.ndarray, zero_point: np.ndarray) -> FqRange:
        """OpenVINO's ONNX frontend: il = s * (0 - zp), ih = s * (255 - zp), in float32."""
        s, zp = np.asarray(scale, f32), np.asarray(zero_point).astype(f32)
        return cls(f32(s * f32(f32(0) - zp)), f32(s * f32(f32(255) - zp)))

    def fold(self, sub, mul) -> FqRange:
        """LPT's fusion of a pending (x - sub) * mul into the FQ: il / mul, then + sub."""
        il, ih = self.il, self.ih
        if mul is not None:
            il, ih = f32(il / np.asarray(mul, f32)), f32(ih / np.asarray(mul, f32))
        if sub is not None:
            il, ih = f32(il + np.asarray(sub, f32)), f32(ih + np.asarray(sub, f32))
        return FqRange(il, ih)

    @property
    def isc(self):
        return f32(f32(255) / f32(self.ih - self.il))

    @property
    def ish(self):
        """The CPU FakeQuantize node's input shift, -il * 255 / (ih - il) (not -il * isc)."""
        return f32(f32(-self.il * f32(255)) / f32(self.ih - self.il))


def _per_channel(v, ndim: int) -> torch.Tensor:
    """A scalar or (C,) constant as a float32 tensor broadcasting along axis 1 of an ndim tensor."""
    t = torch.from_numpy(np.array(v, dtype=f32))
    return t if t.dim() == 0 else t.reshape([1, -1] + [1] * (ndim - 2))


def standalone_fq(x: torch.Tensor, fq: FqRange) -> torch.Tensor:
    """A FakeQuantize OpenVINO runs as a Snippets subgraph: clamp, multiply by isc, subtract f32(il * isc),
    round half to even and saturate to u8 (codes as float32)."""
    il, ih, isc = (_per_channel(v, x.dim()) for v in (fq.il, fq.ih, fq.isc))
    shift = _per_channel(f32(fq.il * fq.isc), x.dim())
    y = torch.minimum(torch.maximum(x.float(), il), ih) * isc
    return torch.clamp(torch.round(y - shift), 0.0, 255.0)


def requantize(t: torch.Tensor, fq: FqRange) -> torch.Tensor:
    """The last FQ post-op of an int8 primitive with u8 output (per-tensor): when its input shift is 0
    (zp = 0) it becomes oneDNN's dst scale 1/isc, applied as a multiply by f32(1 / f32(1 / isc));
    otherwise an eltwise linear, fma(t, isc, ish); then round half to even and saturate."""
    isc, ish = fq.isc, fq.ish
    clo, chi = _rhte(f32(f32(fq.il * isc) + ish)), _rhte(f32(f32(fq.ih * isc) + ish))
    if abs(ish) < f32(f32(chi - clo) * f32(1e-5)):
        ish = f32(0)
    if ish == 0:
        v = t.float() * float(f32(f32(1) / f32(np.float64(1) / np.float64(isc))))
    else:
        v = _fma(t, isc, ish)
    return torch.clamp(torch.round(v), 0.0, 255.0)


@dataclass(frozen=True)
class ResidualFq:
    """The first FQ of a fused residual (conv -> Q1 -> DQ -> Add): its range, and the output range LPT
    gave it when it folded the Add's rescaling r = s1 / s_other and shift zp1' into it."""

    fq: FqRange
    ol: np.float32
    oh: np.float32

    @classmethod
    def of(cls, fq: FqRange, s1, zp1, s_other, zp_other) -> ResidualFq:
        r = f32(f32(s1) / f32(s_other))  # SC1' = SC1 / SC2
        shift = f32(f32(zp1) + f32(f32(f32(zp_other) * f32(s_other)) / f32(s1)))  # SH1' = SH1 + SC2 * SH2 / SC1
        return cls(fq, f32(f32(f32(0) - shift) * r), f32(f32(f32(255) - shift) * r))

    def apply(self, t: torch.Tensor, *, rounding: bool, acc: torch.Tensor | None = None,
              dq: torch.Tensor | None = None) -> torch.Tensor:
        """The FQ post-op's float output (in units of the other branch's scale). `acc`/`dq`: the conv's
        accumulator and multiplier when it has no bias (the scale then fuses into oneDNN's weight scale)."""
        isc, ish = self.fq.isc, self.fq.ish
        osc, osh = f32(f32(self.oh - self.ol) / f32(255)), self.ol
        clo, chi = sorted((_rhte(f32(f32(self.fq.il * isc) + ish)), _rhte(f32(f32(self.fq.ih * isc) + ish))))
        if rounding:
            q = torch.clamp(torch.round(_fma(t, isc, ish)), float(clo), float(chi))
            return _fma(q, osc, osh)
        lo, hi = sorted((f32(f32(clo * osc) + osh), f32(f32(chi * osc) + osh)))
        isc2, ish2 = f32(isc * osc), f32(f32(ish * osc) + osh)
        if abs(ish2) < f32(f32(hi - lo) * f32(1e-5)):
            ish2 = f32(0)
        if ish2 == 0 and acc is not None:
            u = acc.float() * (dq * float(isc2)).float()
        elif ish2 == 0:
            u = t.float() * float(isc2)
        else:
            u = _fma(t, isc2, ish2)
        return torch.clamp(u, float(lo), float(hi))


# --- integer accumulation with int16 pair saturation ------------------------------------------------


def _pair_correction(cols: torch.Tensor, w: torch.Tensor) -> torch.Tensor | None:
    """sum over pairs of sat16(x_a w_a + x_b w_b) - (x_a w_a + x_b w_b), per output: (B, O, L), or None.

    cols: (B, C * K, L) input codes (row c * K + k: channel c at kernel tap k, as F.unfold lays them out);
    w: (O, C, K) weight codes, C even. Pairs are input channels (2i, 2i+1) at one tap; only same-sign
    weights with 255 (|w_a| + |w_b|) > 32767 can leave the int16 range, so only those are computed."""
    n_taps = w.shape[2]
    we, wo = w[:, 0::2], w[:, 1::2]  # (O, C/2, K)
    risky = (we * wo > 0) & ((we.abs() + wo.abs()) * 255 > _I16)
    if not bool(risky.any()):
        return None
    o, p, k = risky.nonzero(as_tuple=True)
    rows_a, rows_b = 2 * p * n_taps + k, (2 * p + 1) * n_taps + k
    w_a, w_b = we[o, p, k][None, :, None], wo[o, p, k][None, :, None]
    batch, _, length = cols.shape
    out = torch.zeros(batch, w.shape[0], length, dtype=torch.float32)
    step = max(1, (1 << 22) // max(batch * length, 1))  # bound the (B, R, L) temporaries
    for i in range(0, len(o), step):
        part = slice(i, i + step)
        v = cols[:, rows_a[part]] * w_a[:, part] + cols[:, rows_b[part]] * w_b[:, part]  # exact in float32
        out.index_add_(1, o[part], v.clamp(-_I16 - 1, _I16) - v)
    return out


def conv_accumulator(x: torch.Tensor, zero_point: float, w: torch.Tensor, stride, pads, dilation,
                     saturate: bool) -> torch.Tensor:
    """int32 accumulator of a u8 x s8 convolution as oneDNN's AVX2 kernel computes it (exact integers
    in float64). x: (B, C, H, W) codes; w: (O, C, kh, kw) codes; pads (top, left, bottom, right)."""
    top, left, bottom, right = pads
    xp = F.pad(x.double(), (left, right, top, bottom), value=float(zero_point))  # padding = zero-point code
    wd = w.double()
    acc = None
    if float(wd.abs().sum((1, 2, 3)).max()) * 255 < 2.0**24:  # integer partial sums below 2^24: float32 exact
        acc = F.conv2d(xp.float(), wd.float(), None, stride, 0, dilation).double()
        if not torch.equal(acc, acc.round()):  # a transform-based algorithm (not a direct sum) was used
            acc = None
    if acc is None:
        acc = F.conv2d(xp, wd, None, stride, 0, dilation)
    if zero_point:
        acc = acc - float(zero_point) * wd.sum((1, 2, 3)).reshape(1, -1, 1, 1)
    if saturate:
        o, c, kh, kw = w.shape
        if c % 2:  # the last channel pairs with a zero channel
            xp, wd, c = F.pad(xp, (0, 0, 0, 0, 0, 1)), F.pad(wd, (0, 0, 0, 0, 0, 1)), c + 1
        cols = F.unfold(xp.float(), (kh, kw), dilation=dilation, stride=stride)  # (B, C * kh * kw, L)
        corr = _pair_correction(cols, wd.reshape(o, c, kh * kw).float())
        if corr is not None:
            acc = acc + corr.double().reshape(acc.shape)
    return acc


def linear_accumulator(x: torch.Tensor, zero_point: float, w: torch.Tensor, saturate: bool) -> torch.Tensor:
    """int32 accumulator of a u8 x s8 fully connected layer (oneDNN AVX2 gemm): x (B, K), w (O, K)."""
    xd, wd = x.double(), w.double()
    acc = xd @ wd.T
    if zero_point:
        acc = acc - float(zero_point) * wd.sum(1)[None]
    if saturate:
        o, k = w.shape
        if k % 2:
            xd, wd = F.pad(xd, (0, 1)), F.pad(wd, (0, 1))
        corr = _pair_correction(xd.float()[:, :, None], wd.reshape(o, -1, 1).float())  # K inputs, one tap
        if corr is not None:
            acc = acc + corr.double().reshape(acc.shape)
    return acc


# --- the graph interpreter ---------------------------------------------------------------------------


@dataclass
class _Value:
    """A tensor as LPT sees it: `value` with a pending dequantization, real = (value - sub) * mul
    (sub/mul None when absent; scalars or (C,) arrays). `q` names the Q node when value holds its codes."""

    value: torch.Tensor
    sub: np.ndarray | None = None
    mul: np.ndarray | None = None
    q: str | None = None

    def real(self) -> torch.Tensor:
        v = self.value.float()
        if self.sub is not None:
            v = v - _per_channel(self.sub, v.dim())
        if self.mul is not None:
            v = v * _per_channel(self.mul, v.dim())
        return v


@dataclass(frozen=True)
class _Quantizer:
    name: str  # the QuantizeLinear node
    scale: np.ndarray
    zero_point: np.ndarray
    fq: FqRange


@dataclass
class _Dense:
    """Conv or Gemm weights as stored: int8 codes, per-output-channel scale; float32 bias (or None)."""

    codes: torch.Tensor
    scale: np.ndarray
    bias: torch.Tensor | None
    conv: dict | None  # stride, pads, dilation for a conv; None for a fully connected layer


@dataclass
class _Fused:
    """An int8 primitive and the post-ops OpenVINO fused into it (see the module docstring)."""

    node: object
    input: str
    dense: _Dense
    relu: bool = False
    out_q: _Quantizer | None = None  # conv -> [ReLU] -> Q
    residual: tuple | None = None  # (Q1, other input tensor, relu after the add, Q2 or None)
    output: str = ""


class OpenVinoFaithfulModel(nn.Module):
    """The QDQ file as OpenVINO CPU executes it. `codes` maps each quantizer (`where`, the first one of
    each Q node) to the u8 codes of the last batch, for the Q nodes whose codes OpenVINO materialises
    (a residual's first Q is fused unrounded and has none); `notes` lists what is modelled unverified."""

    def __init__(self, path: str | Path, runtime: OpenVinoRuntime, *, saturate: bool | None = None) -> None:
        super().__init__()
        import onnx

        model = onnx.load(str(path))
        self.meta = read_layer_map(model)
        self.graph = model.graph
        self.index = g.GraphIndex.of(model.graph)
        self.runtime = runtime
        self.saturate = (not cpu_has_int8_dot_product()) if saturate is None else saturate
        self.codes: dict[str, torch.Tensor] = {}
        self.notes: list[str] = []
        self.q_where = {q: wheres[0] for q, wheres in self.meta["q_nodes"].items() if wheres}
        self.input_names = [i.name for i in self.graph.input if i.name not in self.index.initializers]
        self.output_name = self.graph.output[0].name
        self._steps: list = []
        self._plan()

    # -- planning --

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _array(self, name: str) -> np.ndarray:
        a = self.index.array(name)
        if a is None:
            raise BackendError(f"{name}: expected a constant in the QDQ file (OpenVINO-faithful simulation)")
        return a

    def _quantizer(self, q) -> _Quantizer:
        scale = self._array(q.input[1]).astype(f32)
        zp = self._array(q.input[2]) if len(q.input) > 2 and q.input[2] else np.zeros((), np.uint8)
        if zp.dtype != np.uint8:
            raise BackendError(f"{q.name}: {zp.dtype} activations are not modelled by the OpenVINO-faithful "
                               "simulation (u8 only: use int8_asym or uint8 activations)")
        if scale.ndim:
            self._note(f"{q.name}: per-channel activation quantizer (modelled, not verified on OpenVINO)")
        return _Quantizer(q.name, scale, zp, FqRange.of_quantizer(scale, zp))

    def _single_consumer(self, tensor: str):
        users = self.index.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in self.index.outputs else None

    def _dense(self, node) -> _Dense:
        w_dq = self.index.producer.get(node.input[1])
        if w_dq is None or w_dq.op_type != "DequantizeLinear" or w_dq.input[0] not in self.index.initializers:
            raise BackendError(f"{node.name}: weights are not int8 codes behind DequantizeLinear; OpenVINO runs "
                               "this layer in float, which the OpenVINO-faithful simulation does not model")
        codes = self._array(w_dq.input[0])
        scale = self._array(w_dq.input[1]).astype(f32)
        zp = self._array(w_dq.input[2]) if len(w_dq.input) > 2 and w_dq.input[2] else np.zeros(1)
        if np.any(zp != 0) or codes.dtype != np.int8:
            raise BackendError(f"{node.name}: only s8 weights with zero point 0 are modelled")
        if node.op_type == "Gemm":
            if g.attribute(node, "transA", 0) or g.attribute(node, "alpha", 1.0) != 1.0 \
                    or g.attribute(node, "beta", 1.0) != 1.0:
                raise BackendError(f"{node.name}: Gemm with transA/alpha/beta is not modelled")
            if not g.attribute(node, "transB", 0):
                codes = codes.T  # (K, O) -> (O, K); the per-channel scale sits on axis 1 then
            conv = None
        else:
            if g.attribute(node, "group", 1) != 1 or codes.ndim != 4:
                raise BackendError(f"{node.name}: grouped or non-2D convolutions are not modelled by the "
                                   "OpenVINO-faithful simulation")
            auto_pad = g.attribute(node, "auto_pad", b"NOTSET")
            if auto_pad not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
                raise BackendError(f"{node.name}: auto_pad {auto_pad!r} is not modelled (explicit pads only)")
            pads = list(g.attribute(node, "pads", [0, 0, 0, 0]))
            conv = {"stride": tuple(g.attribute(node, "strides", [1, 1])),
                    "pads": (pads[0], pads[1], pads[2], pads[3]),
                    "dilation": tuple(g.attribute(node, "dilations", [1, 1]))}
        bias = None
        if len(node.input) > 2 and node.input[2]:
            b_dq = self.index.producer.get(node.input[2])
            if b_dq is not None and b_dq.op_type == "DequantizeLinear":  # DQ(int32 codes) folded: f32(code * s)
                b = f32(self._array(b_dq.input[0]).astype(f32) * self._array(b_dq.input[1]).astype(f32))
            else:
                b = self._array(node.input[2]).astype(f32)
            bias = torch.from_numpy(np.ascontiguousarray(b, dtype=f32))
        scale = np.broadcast_to(scale, (codes.shape[0],)).astype(f32)
        return _Dense(torch.from_numpy(np.ascontiguousarray(codes).astype(np.float32)), scale, bias, conv)

    def _plan(self) -> None:
        handled: set[str] = set()
        for node in self.graph.node:
            if node.name in handled:
                continue
            op = node.op_type
            if op == "QuantizeLinear":
                self._check_standalone(node)
                self._steps.append(("fq", node.output[0], node.input[0], self._quantizer(node)))
            elif op == "DequantizeLinear":
                if node.input[0] in self.index.initializers:
                    continue  # weights / bias: folded into the dense layer that reads them
                self._steps.append(("dq", node.output[0], node.input[0], node))
            elif op in ("Conv", "Gemm"):
                fused = self._fuse(node, handled)
                self._steps.append(("dense", fused.output, fused.input, fused))
            elif op == "Relu":
                self._steps.append(("relu", node.output[0], node.input[0], None))
            elif op in _PASS_THROUGH:
                self._steps.append(("reshape", node.output[0], node.input[0], node))
            elif op in ("ReduceMean", "GlobalAveragePool"):
                self._steps.append(("mean", node.output[0], node.input[0], node))
            elif op == "MaxPool":
                self._steps.append(("maxpool", node.output[0], node.input[0], node))
            elif op == "Slice":
                self._steps.append(("slice", node.output[0], node.input[0], node))
            elif op == "Pad":
                self._steps.append(("pad", node.output[0], node.input[0], node))
            elif op == "Add":
                self._note(f"{node.name}: an Add OpenVINO did not fuse into a convolution runs in float here "
                           "(not verified)")
                self._steps.append(("add", node.output[0], node.input[0], node))
            elif op in ("Constant",):
                continue
            else:
                raise BackendError(f"{node.name}: {op} is not modelled by the OpenVINO-faithful simulation")
        self._steps = self._ordered(self._steps)

    def _check_standalone(self, q) -> None:
        """A quantizer not fused into a convolution must run on its own (a Snippets subgraph); OpenVINO
        sometimes folds one elsewhere (a Q -> DQ pair at the graph's output), which is not modelled."""
        executed = self.runtime.executing(q)
        if executed is None or executed.layer_type not in ("Subgraph", "FakeQuantize"):
            where = f"inside {executed.layer_type} {executed.name}" if executed is not None else "out of its graph"
            raise BackendError(f"{q.name}: OpenVINO folded this quantizer {where}, which the OpenVINO-faithful "
                               "simulation does not model")
        if executed.layer_type == "FakeQuantize":
            self._note(f"{q.name}: run as a FakeQuantize node, not a Snippets subgraph (modelled as the latter, "
                       "not verified)")

    def _ordered(self, steps: list) -> list:
        """Steps in an order where every input exists (a fused residual reads the other branch, which the
        file may compute later than the convolution)."""
        ready, ordered, waiting = set(self.input_names), [], list(steps)
        while waiting:
            runnable = [s for s in waiting if all(d in ready for d in self._inputs(s))]
            if not runnable:
                raise BackendError(f"{waiting[0][1]}: its inputs are never computed (OpenVINO-faithful plan)")
            for step in runnable:
                ordered.append(step)
                ready.add(step[1])
                waiting.remove(step)
        return ordered

    @staticmethod
    def _inputs(step) -> list[str]:
        kind, _, src, arg = step
        if kind == "dense" and arg.residual is not None:
            return [src, arg.residual[1]]
        if kind == "add":
            return list(arg.input[:2])
        return [src]

    def _fuse(self, node, handled: set[str]) -> _Fused:
        """The post-op chain OpenVINO fused into this conv / FC, read from its runtime graph."""
        executed = self.runtime.executing(node)
        if executed is None or not executed.primitive.upper().endswith("I8"):
            kernel = executed.primitive if executed is not None else "none"
            raise BackendError(f"{node.name}: OpenVINO did not run it as an int8 kernel (primitive {kernel}); "
                               "the OpenVINO-faithful simulation models int8 convolutions and FC only")
        x_dq = self.index.producer.get(node.input[0])
        if x_dq is None or x_dq.op_type != "DequantizeLinear":
            raise BackendError(f"{node.name}: its input is not quantized (DequantizeLinear): OpenVINO runs it "
                               "in float, not modelled")
        fused = _Fused(node, node.input[0], self._dense(node))
        tensor = node.output[0]
        nxt = self._single_consumer(tensor)
        if nxt is not None and nxt.op_type == "Relu" and executed.holds(nxt):
            fused.relu, tensor = True, nxt.output[0]
            handled.add(nxt.name)
            nxt = self._single_consumer(tensor)
        if nxt is not None and nxt.op_type == "Relu":  # LPT drops a ReLU before a fused FQ with il >= 0
            after = self._single_consumer(nxt.output[0])
            if after is not None and after.op_type == "QuantizeLinear" and executed.holds(after):
                handled.add(nxt.name)
                fused.relu, tensor, nxt = True, nxt.output[0], after
        if nxt is None or nxt.op_type != "QuantizeLinear" or not executed.holds(nxt):
            fused.output = tensor
            return fused
        q1 = self._quantizer(nxt)
        handled.add(nxt.name)
        dq = self._single_consumer(nxt.output[0])
        add = self._single_consumer(dq.output[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if add is None or add.op_type != "Add" or not executed.holds(add):
            fused.out_q, fused.output = q1, nxt.output[0]
            return fused
        if fused.relu:
            raise BackendError(f"{node.name}: ReLU between a convolution and a fused residual is not modelled")
        other = add.input[1] if add.input[0] == dq.output[0] else add.input[0]
        handled.update({dq.name, add.name})
        tensor = add.output[0]
        relu_after, q2 = False, None
        nxt = self._single_consumer(tensor)
        if nxt is not None and nxt.op_type == "Relu":
            after = self._single_consumer(nxt.output[0])
            if executed.holds(nxt) or (after is not None and after.op_type == "QuantizeLinear"
                                            and executed.holds(after)):
                relu_after, tensor = True, nxt.output[0]
                handled.add(nxt.name)
                nxt = after
        if nxt is not None and nxt.op_type == "QuantizeLinear" and executed.holds(nxt):
            q2 = self._quantizer(nxt)
            handled.add(nxt.name)
            tensor = nxt.output[0]
        if fused.dense.bias is None:
            self._note(f"{node.name}: residual convolution without bias (modelled; 2 of 3.1M codes differed "
                       "from OpenVINO in a test)")
        fused.residual = (q1, other, relu_after, q2)
        fused.output = tensor
        return fused

    def probe_safe_q_nodes(self) -> list[str]:
        """Q nodes whose codes this simulation records and OpenVINO can expose as extra outputs without
        changing what it fuses: not the in-place operand of a fused residual (OpenVINO writes the
        convolution's result over that tensor; exposing it stops the Add from fusing)."""
        inplace = set()
        for kind, _, _, arg in self._steps:
            if kind == "dense" and arg.residual is not None:
                dq = self.index.producer.get(arg.residual[1])
                if dq is not None:
                    inplace.add(self.index.producer[dq.input[0]].name)
        recorded = [q for q in self.q_where if self._records(q)]
        return [q for q in recorded if q not in inplace]

    def _records(self, q: str) -> bool:
        for kind, _, _, arg in self._steps:
            if kind == "fq" and arg.name == q:
                return True
            if kind == "dense" and ((arg.out_q is not None and arg.out_q.name == q) or
                                    (arg.residual is not None and arg.residual[3] is not None
                                     and arg.residual[3].name == q)):
                return True
        return False

    # -- execution --

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The graph's output (float32) for its inputs (the file's order; one image batch for a classifier)."""
        if len(inputs) != len(self.input_names):
            raise BackendError(f"the QDQ file takes {len(self.input_names)} inputs, got {len(inputs)}")
        self.codes.clear()
        env: dict[str, _Value] = {n: _Value(x.detach().float().cpu()) for n, x in zip(self.input_names, inputs,
                                                                                        strict=True)}
        for kind, out, src, arg in self._steps:
            env[out] = getattr(self, f"_run_{kind}")(env, src, arg)
        return env[self.output_name].real()

    def _record(self, q: str, codes: torch.Tensor) -> None:
        where = self.q_where.get(q)
        if where is not None:
            self.codes[where] = codes

    def _run_fq(self, env, src, q: _Quantizer) -> _Value:
        v = env[src]
        codes = standalone_fq(v.value, q.fq.fold(v.sub, v.mul))
        self._record(q.name, codes)
        return _Value(codes, q=q.name)

    def _run_dq(self, env, src, node) -> _Value:
        """The DequantizeLinear's own constants become the pending Subtract / Multiply (as LPT keeps them)."""
        v = env[src]
        if v.q is None:
            raise BackendError(f"{node.name}: DequantizeLinear of a tensor that is not a quantizer's codes")
        zp = self._array(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros((), np.uint8)
        return _Value(v.value, zp.astype(f32), self._array(node.input[1]).astype(f32), v.q)

    def _run_relu(self, env, src, _) -> _Value:
        v = env[src]
        if v.sub is None and (v.mul is None or np.all(np.asarray(v.mul) > 0)):
            return _Value(torch.relu(v.value), None, v.mul)  # relu(x * s) = relu(x) * s, s > 0
        return _Value(torch.relu(v.real()))

    def _run_reshape(self, env, src, node) -> _Value:
        v = env[src]
        if node.op_type in ("Identity",):
            return _Value(v.value, v.sub, v.mul)
        per_channel = any(a is not None and np.ndim(a) for a in (v.sub, v.mul))
        value = v.real() if per_channel else v.value
        if node.op_type == "Flatten":
            out = torch.flatten(value, int(g.attribute(node, "axis", 1)))
        elif node.op_type == "Reshape":
            shape = [int(s) for s in self._array(node.input[1])]
            shape = [value.shape[i] if s == 0 and not g.attribute(node, "allowzero", 0) else s
                     for i, s in enumerate(shape)]
            out = value.reshape(shape)
        elif node.op_type == "Squeeze":
            axes = [int(a) for a in self._array(node.input[1])] if len(node.input) > 1 else None
            out = value.squeeze() if axes is None else value.squeeze(tuple(axes))
        else:
            out = value
            for a in sorted(int(a) for a in self._array(node.input[1])):
                out = out.unsqueeze(a)
        return _Value(out) if per_channel else _Value(out, v.sub, v.mul)

    def _run_mean(self, env, src, node) -> _Value:
        v = env[src]
        if node.op_type == "GlobalAveragePool":
            axes, keep = list(range(2, v.value.dim())), True
        else:
            axes = [int(a) for a in self._array(node.input[1])] if len(node.input) > 1 else \
                list(g.attribute(node, "axes", []))
            keep = bool(g.attribute(node, "keepdims", 1))
        count = int(np.prod([v.value.shape[a] for a in axes]))
        total = v.value.double().sum(dim=axes, keepdim=keep)
        return _Value((total.float() / float(count)).float(), v.sub, v.mul)

    def _run_maxpool(self, env, src, node) -> _Value:
        """Max pooling is exact in any representation whose dequantization is increasing (per channel,
        mul > 0): max((v - sub) * mul) = (max(v) - sub) * mul, so codes and float give the same values."""
        v = env[src]
        if any(int(d) != 1 for d in g.attribute(node, "dilations", [])) or \
                g.attribute(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise BackendError(f"{node.name}: MaxPool with dilations or auto_pad is not modelled")
        kernel = [int(k) for k in g.attribute(node, "kernel_shape", [])]
        strides = [int(st) for st in g.attribute(node, "strides", [1] * len(kernel))]
        pads = [int(p) for p in g.attribute(node, "pads", [0] * 2 * len(kernel))]
        if len(kernel) != 2 or pads[:2] != pads[2:]:
            raise BackendError(f"{node.name}: only 2D MaxPool with symmetric pads is modelled")
        increasing = v.mul is None or bool(np.all(np.asarray(v.mul) > 0))
        value = v.value.float() if increasing else v.real()
        out = F.max_pool2d(value, kernel, strides, pads[:2], ceil_mode=bool(g.attribute(node, "ceil_mode", 0)))
        return _Value(out, v.sub, v.mul, v.q) if increasing else _Value(out)

    def _run_slice(self, env, src, node) -> _Value:
        v = env[src]
        starts, ends = self._array(node.input[1]), self._array(node.input[2])
        axes = self._array(node.input[3]) if len(node.input) > 3 and node.input[3] else np.arange(len(starts))
        steps = self._array(node.input[4]) if len(node.input) > 4 and node.input[4] else np.ones(len(starts), int)
        index = [slice(None)] * v.value.dim()
        for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
            a = int(a) % v.value.dim()
            size = v.value.shape[a]
            index[a] = slice(max(-size, min(int(s), size)), min(int(e), size), int(st))
        return _Value(v.value[tuple(index)], v.sub, v.mul)

    def _run_pad(self, env, src, node) -> _Value:
        v = env[src]
        if g.attribute(node, "mode", b"constant") not in (b"constant", "constant"):
            raise BackendError(f"{node.name}: only constant padding is modelled")
        pads = [int(p) for p in self._array(node.input[1])]
        value = float(self._array(node.input[2])) if len(node.input) > 2 and node.input[2] else 0.0
        n = len(pads) // 2
        torch_pads = []
        for axis in reversed(range(n)):
            torch_pads += [pads[axis], pads[axis + n]]
        channel_padded = pads[1] or pads[1 + n]
        if any(a is not None and np.ndim(a) for a in (v.sub, v.mul)) and channel_padded:
            return _Value(F.pad(v.real(), torch_pads, value=value))
        if v.mul is not None:  # the real pad value in the pending dequantization's units (LPT)
            value = float(f32(f32(value) / f32(v.mul)))
        if v.sub is not None:
            value = float(f32(f32(value) + f32(v.sub)))
        return _Value(F.pad(v.value, torch_pads, value=value), v.sub, v.mul)

    def _run_add(self, env, src, node) -> _Value:
        return _Value(env[node.input[0]].real() + env[node.input[1]].real())

    def _run_dense(self, env, src, fused: _Fused) -> _Value:
        x = env[src]
        if x.q is None or x.sub is None:
            raise BackendError(f"{fused.node.name}: input is not the codes of a quantizer")
        if np.size(x.sub) != 1 or np.size(x.mul) != 1:
            raise BackendError(f"{fused.node.name}: a per-channel input quantizer is not modelled")
        zp, s_x = float(np.asarray(x.sub).reshape(-1)[0]), f32(np.asarray(x.mul).reshape(-1)[0])
        d = fused.dense
        if d.conv is not None:
            acc = conv_accumulator(x.value, zp, d.codes, d.conv["stride"], d.conv["pads"], d.conv["dilation"],
                                   self.saturate)
        else:
            acc = linear_accumulator(x.value.reshape(len(x.value), -1), zp, d.codes, self.saturate)
        dq = _per_channel(f32(s_x * d.scale), acc.dim())  # the Multiply LPT puts after the conv
        t = acc.float() * dq
        if d.bias is not None:
            t = t + d.bias.reshape([1, -1] + [1] * (acc.dim() - 2))
        if fused.residual is not None:
            return self._residual(env, fused, t, acc, dq)
        if fused.out_q is not None:  # ReLU before a Q with il = 0 is absorbed; with zp > 0 it stays
            if fused.relu and float(fused.out_q.zero_point) != 0:  # a real ReLU post-op before the FQ
                t = torch.relu(t)
            codes = requantize(t, fused.out_q.fq)
            self._record(fused.out_q.name, codes)
            return _Value(codes, q=fused.out_q.name)
        return _Value(torch.relu(t) if fused.relu else t)

    def _residual(self, env, fused: _Fused, t, acc, dq) -> _Value:
        q1, other_name, relu_after, q2 = fused.residual
        other = env[other_name]
        if other.q is None or other.sub is None:
            raise BackendError(f"{fused.node.name}: the residual's other input is not quantized codes")
        s_o, zp_o = f32(np.asarray(other.mul).reshape(-1)[0]), f32(np.asarray(other.sub).reshape(-1)[0])
        res = ResidualFq.of(q1.fq, q1.scale, q1.zero_point, s_o, zp_o)
        u = res.apply(t, rounding=q2 is None, acc=None if fused.dense.bias is not None else acc,
                      dq=None if fused.dense.bias is not None else dq)
        z = u + other.value.float()  # oneDNN sum post-op, scale 1
        if relu_after:
            z = torch.relu(z)
        if q2 is None:
            return _Value(z, None, np.asarray(s_o))  # s_other stays pending (LPT moved it after the Add)
        codes = requantize(z, q2.fq.fold(None, s_o))
        self._record(q2.name, codes)
        return _Value(codes, q=q2.name)


def check_file_matches(qmodel: nn.Module, path: str | Path) -> None:
    """BackendError when the QDQ file's activation scales are not `qmodel`'s calibrated ones."""
    import onnx

    model = onnx.load(str(path))
    meta = read_layer_map(model)
    index = g.GraphIndex.of(model.graph)
    by_where = {q.where: q for _, w in quant_wrappers(qmodel) for q in w.activation_quantizers()}
    by_name = {n.name: n for n in model.graph.node}
    for q_name, wheres in meta["q_nodes"].items():
        node = by_name.get(q_name)
        quantizer = by_where.get(wheres[0]) if wheres else None
        if node is None or quantizer is None or quantizer.params is None:
            raise BackendError(f"{path}: quantizer {wheres[0] if wheres else q_name} is not in this model "
                               "(the file was exported from another model)")
        offset = activation_codec(quantizer.spec.format, quantizer.where).offset
        scale = quantizer.params.scale.detach().float().reshape(-1).numpy()
        zp = quantizer.params.zero_point.detach().reshape(-1).numpy().astype(np.int64) + offset
        if not (np.array_equal(index.array(node.input[1]).reshape(-1).astype(f32), scale)
                and np.array_equal(index.array(node.input[2]).reshape(-1).astype(np.int64), zp)):
            raise BackendError(f"{path}: {wheres[0]} has other scales than the model's (the file was exported "
                               "from another calibration)")


def openvino_faithful_model(qmodel: nn.Module, path: str | Path, runtime: OpenVinoRuntime | None = None, *,
                            saturate: bool | None = None) -> OpenVinoFaithfulModel:
    """The calibrated fake-quant model `qmodel` as OpenVINO's CPU plugin runs its QDQ export `path`.

    runtime: OpenVINO's runtime graph of the file (default: `openvino_runtime(path)`, compiles it);
    saturate: int16 pair saturation of the int8 dot products (default: when the CPU lacks VNNI/AMX)."""
    check_file_matches(qmodel, path)
    runtime = runtime if runtime is not None else openvino_runtime(path)
    return OpenVinoFaithfulModel(path, runtime, saturate=saturate).eval()


__all__ = ["ExecutedNode", "FqRange", "OpenVinoFaithfulModel", "OpenVinoRuntime", "ResidualFq", "check_file_matches",
           "conv_accumulator", "linear_accumulator", "openvino_faithful_model", "openvino_runtime", "requantize",
           "standalone_fq"]
