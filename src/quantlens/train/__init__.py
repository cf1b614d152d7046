"""FP32 training and batched prediction."""

from quantlens.train.loop import TrainResult, train_model
from quantlens.train.predict import predict, predict_with

__all__ = ["TrainResult", "predict", "predict_with", "train_model"]
