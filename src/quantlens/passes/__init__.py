"""Model transformations: before quantization (functional ops to modules, BN folding, cross-layer
equalisation) and after it (bias correction, AdaRound). Registered passes: `PASSES`, `apply_pass`."""

from quantlens.passes.adaround import AdaRoundLayer, AdaRoundOptions, AdaRoundResult, adaround
from quantlens.passes.batchnorm import FoldResult, fold_batchnorm
from quantlens.passes.bias_correction import BiasCorrectionResult, correct_bias
from quantlens.passes.equalization import ChannelClamp, EqualizeResult, equalize, weight_range_uniformity
from quantlens.passes.functional_to_modules import ModularizeResult, functional_to_modules
from quantlens.passes.registry import PASSES, Pass, PassContext, PassOutcome, apply_pass, register_pass

__all__ = [
    "PASSES", "AdaRoundLayer", "AdaRoundOptions", "AdaRoundResult", "BiasCorrectionResult", "ChannelClamp",
    "EqualizeResult", "FoldResult", "ModularizeResult", "Pass", "PassContext", "PassOutcome", "adaround",
    "apply_pass", "correct_bias", "equalize", "fold_batchnorm", "functional_to_modules", "register_pass",
    "weight_range_uniformity",
]
