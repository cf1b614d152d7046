"""The registered experiment stages, in run order: train, eval, quantization (simulated formats),
benchmark. Importing this package registers them."""

import quantlens.experiments.stages.peers  # noqa: F401  (registration: the peers stage)
from quantlens.experiments.stages import benchmark, evaluate, simulate, train  # noqa: F401  (registration)
from quantlens.experiments.stages.base import STAGES, RunContext, Stage, load_result, ordered_stages, save_result
from quantlens.experiments.stages.evaluate import EvaluationResult
from quantlens.experiments.stages.simulate import FormatRow, SimulationSummary
from quantlens.experiments.stages.train import CrossValidationResult, TrainingResult

__all__ = ["STAGES", "CrossValidationResult", "EvaluationResult", "FormatRow", "RunContext", "SimulationSummary",
           "Stage", "TrainingResult", "load_result", "ordered_stages", "save_result"]
