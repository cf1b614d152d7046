"""Planning the replay: which ONNX nodes OpenVINO fused into each int8 convolution / FC (read from its
runtime graph), the constants each step needs, and an order in which every step's inputs exist."""

from __future__ import annotations

import numpy as np
import torch

from quantlens.backends.base import BackendError
from quantlens.backends.qdq import graph as g
from quantlens.backends.qdq.openvino_faithful.fake_quant import FqRange, f32
from quantlens.backends.qdq.openvino_faithful.values import _Dense, _Fused, _Quantizer

_PASS_THROUGH = ("Reshape", "Flatten", "Identity", "Squeeze", "Unsqueeze")
# Float operators after the last quantizer (a final Softmax, quantlens's log of probabilities), and before the
# first one (a file's own input normalisation), computed in float32 as written.
_FLOAT_TAIL = ("Softmax", "LogSoftmax", "Log", "Clip", "Max", "Min")
_FLOAT_HEAD = ("Sub", "Div", "Mul")


class _Planner:
    """The planning half of `OpenVinoFaithfulModel` (a mixin): builds `self._steps` from `self.graph`,
    `self.index` and `self.runtime`, adding to `self.notes` what it models unverified."""

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
        head = {v.name for v in self.graph.input}  # values computed from the input before any quantizer
        for node in self.graph.node:
            if node.name in handled:
                continue
            op = node.op_type
            if op in _FLOAT_HEAD and node.input[0] in head:
                head.update(node.output)
                self._note(f"{node.name}: {op} of the input before its first quantizer runs in float here (not "
                           "verified bit for bit: OpenVINO may fold it into that quantizer)")
                self._steps.append(("float", node.output[0], node.input[0], node))
                continue
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
            elif op in _FLOAT_TAIL:
                self._note(f"{node.name}: {op} runs in float on dequantized values here (not verified bit for bit; "
                           "it cannot change which class is highest unless its input is quantized after it)")
                self._steps.append(("float", node.output[0], node.input[0], node))
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
