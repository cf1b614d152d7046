"""The default experiment: what `quantlens run` does with no config file.

It must finish in well under three minutes on two cores, on data that ships with a dependency
(scikit-learn's digits), and show what quantlens is for: an FP32 baseline, then the same model
simulated in several number formats, compared on the same samples with paired statistics.
"""

from __future__ import annotations

from quantlens.experiments.spec import ExperimentSpec, spec_from_dict

DEFAULT_EXPERIMENT = {
    "name": "digits-default",
    "data": {"source": "digits"},
    "model": {"name": "compact_cnn"},
    "train": {"enabled": True, "epochs": 15, "optimizer": "adamw", "patience": 5},
    "quantization": [
        {"format": "int8"},
        {"format": "fp8_e4m3"},
        {"format": "fp8_e5m2"},
        {"format": "int4", "inputs": {"format": "int8"}, "name": "int4 weights, int8 inputs"},
        {"format": "mxfp4"},
        {"format": "nvfp4"},
    ],
}


def default_spec() -> ExperimentSpec:
    return spec_from_dict(DEFAULT_EXPERIMENT, "default experiment")
