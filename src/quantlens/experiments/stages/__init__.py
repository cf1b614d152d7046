"""The registered experiment stages, in run order: train, eval, quantization (simulated formats and
post-training recipes), peers (other tools' own INT8), benchmark. Importing this package registers them."""

from quantlens.experiments.stages import benchmark, evaluate, peers, simulate, train  # noqa: F401  (registration)
from quantlens.experiments.stages.base import STAGES, RunContext, Stage, load_result, ordered_stages, save_result
from quantlens.experiments.stages.evaluate import EvaluationResult
from quantlens.experiments.stages.peers import PeerRow, PeerSummary
from quantlens.experiments.stages.simulate import FormatRow, SimulationSummary
from quantlens.experiments.stages.train import CrossValidationResult, TrainingResult

__all__ = ["STAGES", "CrossValidationResult", "EvaluationResult", "FormatRow", "PeerRow", "PeerSummary", "RunContext",
           "SimulationSummary", "Stage", "TrainingResult", "load_result", "ordered_stages", "save_result"]
