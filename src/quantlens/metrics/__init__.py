"""Classification metrics over saved per-sample predictions."""

from quantlens.metrics.classification import Predictions, classification_metrics, expected_calibration_error

__all__ = ["Predictions", "classification_metrics", "expected_calibration_error"]
