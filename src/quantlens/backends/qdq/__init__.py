"""Deploy exactly the model quantlens simulated: an ONNX QDQ file with quantlens's own scales.

    from quantlens.backends.qdq import export_qdq, ort_fusion, faithful_model, check_agreement
    result = export_qdq(qmodel, example_input, "model.qdq.onnx")    # calibrated fake-quant model
    ort_fusion(result.path).integer_layers                           # what became QLinearConv ...
    faithful = faithful_model(qmodel, result.path)                   # what ONNX Runtime computes
    openvino = openvino_faithful_model(qmodel, result.path)          # what OpenVINO CPU computes
    report = check_agreement(qmodel, result.path, batches)           # simulated vs deployed
    report.to_dict()

Imports onnx / onnxruntime / openvino only inside the functions that need them.
"""

from quantlens.backends.qdq.agreement import (
    AgreementReport,
    CodeStats,
    LayerCodes,
    RuntimeAgreement,
    check_agreement,
)
from quantlens.backends.qdq.deploy import DeployLayer, activation_codec, check_deployable, deploy_model, weight_codec
from quantlens.backends.qdq.export import QdqExport, export_qdq, read_layer_map, unsupported_operator
from quantlens.backends.qdq.faithful import FaithfulModel, Requant, faithful_model
from quantlens.backends.qdq.inspect import FusionReport, LayerFusion, openvino_fusion, ort_fusion
from quantlens.backends.qdq.openvino_faithful import (
    OpenVinoFaithfulModel,
    OpenVinoRuntime,
    openvino_faithful_model,
    openvino_runtime,
)
from quantlens.backends.qdq.openvino_probes import OpenVinoProbes
from quantlens.backends.qdq.ops import dequantize_codes, quantize_divide
from quantlens.backends.qdq.runners import OpenVinoQdqRunner, OrtQdqRunner, ort_session

__all__ = [
    "AgreementReport", "CodeStats", "DeployLayer", "check_deployable", "FaithfulModel", "FusionReport", "LayerCodes",
    "LayerFusion", "OpenVinoFaithfulModel", "OpenVinoProbes", "OpenVinoQdqRunner", "OpenVinoRuntime", "OrtQdqRunner",
    "QdqExport", "Requant", "RuntimeAgreement", "activation_codec", "check_agreement", "deploy_model",
    "dequantize_codes", "export_qdq", "faithful_model", "openvino_faithful_model", "openvino_fusion",
    "openvino_runtime", "ort_fusion", "ort_session", "quantize_divide", "read_layer_map", "unsupported_operator",
    "weight_codec",
]
