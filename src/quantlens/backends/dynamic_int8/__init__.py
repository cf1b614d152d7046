"""Dynamic INT8 deployment of Linear layers on ONNX Runtime and PyTorch (torchao), with quantlens's weights.

    from quantlens.backends.dynamic_int8 import (quantize_dynamic_int8, deploy_dynamic_int8,
                                                 check_dynamic_agreement)
    qmodel = quantize_dynamic_int8(model, "onnxruntime")      # the simulation: the recipe of targets.py
    deployment = deploy_dynamic_int8(qmodel, "onnxruntime", example_input=x, folder=work_dir)
    deployment.run(batch)                                     # float32 logits (B, classes)
    check_dynamic_agreement(qmodel, deployment, batches, labels=labels).to_dict()

Weights: quantlens's int8 codes and scales (per output feature or per tensor) in the deployed artefact.
Activations: quantized on every call by the runtime, and by the simulation with the same formula and
granularity (targets.py: ONNX Runtime per tensor uint8, torchao per row int8). Linear layers only:
convolutions and attention matmuls stay float (dynamic INT8 convolutions are slower than FP32 on CPUs).
Imports onnx / onnxruntime / torchao only inside the functions that need them.
"""

from quantlens.backends.dynamic_int8.agreement import DeployedAgreement, compare_deployed
from quantlens.backends.dynamic_int8.deploy import DynamicDeployment, check_dynamic_agreement, deploy_dynamic_int8
from quantlens.backends.dynamic_int8.faithful import TorchaoFaithfulLinear, faithful_model, quantize_rows_int8_asym
from quantlens.backends.dynamic_int8.layers import DynamicLinear, check_plans, dynamic_linears
from quantlens.backends.dynamic_int8.ort_export import (
    OrtDynamicExport,
    OrtDynamicLinear,
    export_ort_dynamic,
    ort_dynamic_model,
    read_layer_map,
)
from quantlens.backends.dynamic_int8.ort_ops import dynamic_quantize_uint8
from quantlens.backends.dynamic_int8.ort_runtime import DynamicFusion, OrtDynamicRunner, ort_dynamic_fusion
from quantlens.backends.dynamic_int8.recipe import dynamic_int8_config, plan_dynamic_int8, quantize_dynamic_int8
from quantlens.backends.dynamic_int8.targets import ONNXRUNTIME, TARGETS, TORCHAO, DynamicTarget, get_target
from quantlens.backends.dynamic_int8.torchao_deploy import (
    TorchaoDeployment,
    TorchaoDynamicRunner,
    torchao_available,
    torchao_model,
)

__all__ = [
    "ONNXRUNTIME", "TARGETS", "TORCHAO", "DeployedAgreement", "DynamicDeployment", "DynamicFusion", "DynamicLinear",
    "DynamicTarget", "OrtDynamicExport", "OrtDynamicLinear", "OrtDynamicRunner", "TorchaoDeployment",
    "TorchaoDynamicRunner", "TorchaoFaithfulLinear", "check_dynamic_agreement", "check_plans", "compare_deployed",
    "deploy_dynamic_int8", "dynamic_int8_config", "dynamic_linears", "dynamic_quantize_uint8", "export_ort_dynamic",
    "faithful_model", "get_target", "ort_dynamic_fusion", "ort_dynamic_model", "plan_dynamic_int8",
    "quantize_dynamic_int8", "quantize_rows_int8_asym", "read_layer_map", "torchao_available", "torchao_model",
]
