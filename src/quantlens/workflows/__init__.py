"""One handler per recipe type: model in, model out (post-training quantization today)."""

from quantlens.workflows.ptq import PtqOutcome, post_training_quantize

__all__ = ["PtqOutcome", "post_training_quantize"]
