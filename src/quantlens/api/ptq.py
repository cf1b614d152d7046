"""`quantize`: post-training quantization of a model in one call, from PyTorch data."""

from __future__ import annotations

from torch import nn

from quantlens import events
from quantlens.api.data import DataLike, first_samples
from quantlens.api.recipe import as_recipe
from quantlens.errors import ConfigError, DataError
from quantlens.recipes import QuantizationConfig
from quantlens.workflows.ptq import post_training_quantize


def quantize(model: nn.Module, recipe: QuantizationConfig | dict | str, calibration_data: DataLike, *,
             batch_size: int | None = None) -> nn.Module:
    """A calibrated fake-quant copy of `model` (in eval mode; `model` itself is left as it was).

    recipe: a `QuantizationConfig`, a dict as in a YAML quantization entry (`{"format": "int8",
    "weights": {"observer": "mse"}, "passes": ["fold_bn", "bias_correction"]}`) or a format name.
    calibration_data: a Dataset, DataLoader, tensor of inputs or iterable of batches yielding `x`,
    `(x, y, ...)` or dicts with an image key (labels are not used). The first
    `recipe.calibration_samples` samples (512 by default) calibrate the static ranges and feed the
    passes. batch_size: how a Dataset or a tensor is batched (default: the recipe's
    `calibration_batch_size`, 32); a DataLoader keeps its own batches.

    The full outcome (the plan of every layer, what each pass reported) is
    `quantlens.workflows.post_training_quantize`'s, which this calls.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model is {type(model).__name__}; expected a torch.nn.Module")
    config = as_recipe(recipe)
    if config.deploy:
        raise ConfigError(f"recipe.deploy: quantlens.quantize returns the simulated model and deploys nothing; "
                          f"drop deploy ({', '.join(config.deploy)}) or run the recipe with `quantlens run`")
    size = config.calibration_batch_size if batch_size is None else batch_size
    wanted = config.calibration_samples
    calibration = [batch.x for batch in first_samples(calibration_data, wanted, batch_size=size,
                                                      what="calibration_data")]
    seen = sum(len(x) for x in calibration)
    if seen == 0:
        raise DataError("calibration_data yields no samples; static ranges and passes need some")
    if seen < wanted:
        events.note(f"calibration_data holds {seen} samples, fewer than the recipe's calibration_samples "
                    f"({wanted}): all of them calibrate")
    outcome = post_training_quantize(model, config, calibration)
    events.note(f"{config.label}: calibrated on {outcome.calibration_samples} samples"
                + (f", passes {', '.join(p['pass'] for p in outcome.passes)}" if outcome.passes else ""))
    return outcome.model.eval()

