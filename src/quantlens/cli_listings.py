"""`quantlens schema | models | formats | observers | passes`: what the registries hold, one line each."""

from __future__ import annotations

import json

import typer

from quantlens.cli_output import out

listings = typer.Typer()


@listings.command()
def schema() -> None:
    """Print the JSON Schema of the experiment YAML file."""
    from quantlens.experiments.spec import ExperimentSpec

    out.print_json(json.dumps(ExperimentSpec.model_json_schema()))


@listings.command("models")
def list_models(pattern: str = typer.Argument("*", help="glob")) -> None:
    """List the models of the zoo."""
    from quantlens.models.build import MODELS

    for name, card in MODELS.items():
        if name in MODELS.names(pattern):
            out.print(f"{name:<18} input {card.input_size:>3}  {card.description}", highlight=False)


@listings.command("formats")
def list_formats(pattern: str = typer.Argument("*", help="glob")) -> None:
    """List the number formats: bits, range and special values."""
    from quantlens.formats import BlockFormat, FloatFormat, format_names, get_format

    for name in format_names(pattern):
        fmt = get_format(name)
        if isinstance(fmt, BlockFormat):
            detail = (f"{fmt.element.name} elements, blocks of {fmt.block_size}, {fmt.scale_format.name} scales"
                      + (", FP32 tensor scale" if fmt.rule == "nvfp4" else ""))
        elif isinstance(fmt, FloatFormat):
            detail = (f"{fmt.bits} bits (e{fmt.exp_bits}m{fmt.man_bits}, bias {fmt.bias}), max {fmt.max:g}, "
                      f"min subnormal {fmt.min_subnormal:g}, {'Inf' if fmt.has_inf else 'no Inf'}, "
                      f"{'NaN' if fmt.has_nan else 'no NaN'}")
        else:
            detail = f"{fmt.bits} bits, [{fmt.qmin}, {fmt.qmax}]{'' if fmt.symmetric else ', zero point'}"
        out.print(f"{name:<12} {detail}", highlight=False)


def _first_line(obj) -> str:
    return ((getattr(obj, "__doc__", None) or "").strip().splitlines() or [""])[0]


@listings.command("observers")
def list_observers() -> None:
    """List the calibration observers (how a tensor's range is found)."""
    from quantlens.observers import OBSERVERS

    for name, observer in OBSERVERS.items():
        out.print(f"{name:<16} {_first_line(observer)}", highlight=False)
    out.print(f"{'dynamic':<16} no calibration: each batch's own range (activations)", highlight=False)


@listings.command("passes")
def list_passes() -> None:
    """List the post-training passes a recipe can name, and which model each runs on."""
    from quantlens.passes.registry import PASSES

    for name, registered in PASSES.items():
        out.print(f"{name:<16} {registered.stage:<9} {_first_line(registered)}", highlight=False)
