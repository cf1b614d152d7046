"""FP32 training, batched prediction, and what a model's outputs are (logits, probabilities, log-probabilities)."""

from quantlens.train.loop import TrainResult, train_model
from quantlens.train.outputs import OUTPUT_KINDS, OutputInfo, adapt_outputs, detect_output_kind, to_probabilities
from quantlens.train.predict import predict, predict_with

__all__ = ["OUTPUT_KINDS", "OutputInfo", "TrainResult", "adapt_outputs", "detect_output_kind", "predict",
           "predict_with", "to_probabilities", "train_model"]
