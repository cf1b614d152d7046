"""The default experiment: what `quantlens run` does with no config file.

It must finish in well under three minutes on two cores, on data that ships with a dependency
(scikit-learn's digits), and show what quantlens is for.
"""

from __future__ import annotations

from quantlens.experiments.spec import ExperimentSpec, spec_from_dict

DEFAULT_EXPERIMENT = {
    "name": "digits-default",
    "data": {"source": "digits"},
    "model": {"name": "compact_cnn"},
    "train": {"enabled": True, "epochs": 15, "optimizer": "adamw", "patience": 5},
}


def default_spec() -> ExperimentSpec:
    return spec_from_dict(DEFAULT_EXPERIMENT, "default experiment")
