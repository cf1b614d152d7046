"""The per-node ops of the replay: each step (standalone FQ, DequantizeLinear, ReLU, reshapes, mean,
max pool, slice, pad, Add, an int8 primitive with its fused post-ops, a float tail such as a final
Softmax) computed as OpenVINO does."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from quantlens.backends.base import BackendError
from quantlens.backends.qdq import graph as g
from quantlens.backends.qdq.openvino_faithful.accumulators import conv_accumulator, linear_accumulator
from quantlens.backends.qdq.openvino_faithful.fake_quant import ResidualFq, _per_channel, f32, requantize, standalone_fq
from quantlens.backends.qdq.openvino_faithful.values import _Fused, _Quantizer, _Value


class _NodeOps:
    """The execution half of `OpenVinoFaithfulModel` (a mixin): one `_run_<kind>` per step kind, reading
    constants through `self._array` and recording Q codes in `self.codes`."""

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

    def _run_float(self, env, src, node) -> _Value:
        """Softmax / LogSoftmax / Log / Clip / elementwise Max, Min, Sub, Div, Mul (with constants, or values
        computed before), in float32 on real values."""
        x = env[src].real()
        op = node.op_type
        if op in ("Softmax", "LogSoftmax"):
            axis = int(g.attribute(node, "axis", -1))
            return _Value(torch.softmax(x, axis) if op == "Softmax" else torch.log_softmax(x, axis))
        if op == "Log":
            return _Value(torch.log(x))
        others = [self._operand(env, name) for name in node.input[1:] if name]
        if op in ("Sub", "Div", "Mul"):  # float32, as written: x op constant
            return _Value({"Sub": torch.sub, "Div": torch.div, "Mul": torch.mul}[op](x, others[0]))
        if op == "Clip":
            low = others[0] if len(others) > 0 else g.attribute(node, "min", None)
            high = others[1] if len(others) > 1 else g.attribute(node, "max", None)
            return _Value(torch.clamp(x, None if low is None else torch.as_tensor(low, dtype=x.dtype),
                                      None if high is None else torch.as_tensor(high, dtype=x.dtype)))
        for other in others:
            x = torch.maximum(x, other) if op == "Max" else torch.minimum(x, other)
        return _Value(x)

    def _operand(self, env, name: str) -> torch.Tensor:
        """A second input: a constant (initializer) or a value computed before."""
        if name in env:
            return env[name].real()
        return torch.tensor(np.asarray(self._array(name), dtype=np.float32))  # a copy: constants are read-only

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
