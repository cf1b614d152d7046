"""FP32 training and batched prediction."""

from quantlens.train.loop import TrainResult, train_model
from quantlens.train.predict import predict

__all__ = ["TrainResult", "predict", "train_model"]
