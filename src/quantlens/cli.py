"""The `quantlens` command. Thin: parse options, call the library, print.

A user mistake (a `QuantlensError`) prints one line on stderr and exits with code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import typer

from quantlens.cli_errors import run_reporting_errors
from quantlens.cli_listings import listings
from quantlens.cli_options import (
    MODEL_HELP,
    CheckOption,
    DeviceOption,
    Layout,
    LayoutOption,
    LimitOption,
    MeanOption,
    OutOption,
    OutputKind,
    OutputKindOption,
    PixelScaleOption,
    PositiveClassOption,
    PretrainedOption,
    Split,
    StdOption,
    csv_list,
    given,
    model_block,
)
from quantlens.cli_output import err, out

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Which precision should this image classifier run in, and what does it cost?")


def _print_version(value: bool) -> None:
    if value:
        from quantlens import __version__

        out.print(f"quantlens {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", "-V", callback=_print_version, is_eager=True,
                                          help="print the version and exit")) -> None:
    """Which precision should this image classifier run in, and what does it cost?"""

def _write_reports(record, outcome) -> None:
    """Reporter: the text tables and figures of a run, written into its folder before it is finalised."""
    from quantlens.report.bench_plots import write_benchmark_plots
    from quantlens.report.bench_tables import write_benchmark_tables
    from quantlens.report.tables import write_text_summary

    write_text_summary(record, outcome)
    if outcome.benchmark is not None:
        write_benchmark_tables(outcome.benchmark)
        write_benchmark_plots(outcome.benchmark)


def _check(spec) -> None:
    from quantlens.experiments.check import check_experiment

    for line in check_experiment(spec):
        out.print(line, highlight=False, markup=False)
    out.print("check passed; nothing was run or written", highlight=False)


def _run(spec, check: bool = False) -> None:
    if check:
        _check(spec)
        return
    from quantlens import events
    from quantlens.experiments.runner import run_experiment
    from quantlens.progress_view import ProgressView
    from quantlens.report.bench_tables import print_benchmark
    from quantlens.report.tables import cross_validation_table, metrics_view, simulation_table

    with ProgressView(err) as view, events.listening(view):
        outcome = run_experiment(spec, reporters=[_write_reports])
    if outcome.training is not None and outcome.training.cross_validation is not None:
        out.print(cross_validation_table(outcome.training.cross_validation))
    if outcome.evaluation is not None:
        out.print(metrics_view(outcome.evaluation, f"{spec.model.name} on {spec.data.source}"))
    if outcome.simulation is not None:
        out.print(simulation_table(outcome, f"simulated formats vs FP32 on the same "
                                            f"{outcome.evaluation.metrics.n} samples"))
    if outcome.peers is not None:
        from quantlens.report.peer_tables import peer_table

        out.print(peer_table(outcome.peers))
    if outcome.benchmark is not None:
        print_benchmark(outcome.benchmark, out)
    out.print(f"run record: {outcome.run_dir}")


def _spec(values: dict, origin: str):
    from quantlens.experiments.spec import spec_from_dict

    return spec_from_dict(values, origin)


def _overridden(spec, block: str, origin: str, **values):
    """`spec` with `values` set in its `block`, validated as a config file's would be (errors name `origin`)."""
    return _spec({**spec.to_dict(), block: {**getattr(spec, block).model_dump(), **values}}, origin)


@app.command()
def run(config: Path | None = typer.Argument(None, help="experiment YAML; none runs the default experiment"),
        out_root: str | None = OutOption, limit: int | None = LimitOption,
        positive_class: str | None = PositiveClassOption, check: bool = CheckOption) -> None:
    """Run an experiment from a YAML file (or the default experiment on scikit-learn's digits)."""
    from quantlens.experiments.defaults import default_spec
    from quantlens.experiments.spec import load_spec_with_notes

    spec, notes = load_spec_with_notes(config) if config else (default_spec(), [])
    for note in notes:  # older entries are read; say how, so the user can update the file
        err.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
    if out_root:
        spec = _overridden(spec, "output", "--out", root=out_root)
    if limit is not None:
        spec = _overridden(spec, "eval", "--limit", max_samples=limit)
    if positive_class is not None:
        spec = _overridden(spec, "eval", "--positive-class", positive_class=positive_class)
    _run(spec, check)



@app.command("eval")
def evaluate(model: str = typer.Option(..., help=MODEL_HELP),
             data: str = typer.Option(..., help="digits | medmnist:<npz> | imagefolder:<root> | idx:<dir>"),
             weights: str | None = typer.Option(None, help="checkpoint to evaluate"),
             split: Split = typer.Option("auto", help="which samples to evaluate"),
             image_size: int | None = typer.Option(None, help="square input side"),
             batch_size: int = typer.Option(256),
             name: str = typer.Option("eval", help="run name"),
             output_kind: OutputKind = OutputKindOption, mean: str | None = MeanOption, std: str | None = StdOption,
             pixel_scale: float | None = PixelScaleOption, input_layout: Layout = LayoutOption,
             pretrained: bool = PretrainedOption,
             limit: int | None = LimitOption, positive_class: str | None = PositiveClassOption,
             device: str = DeviceOption, out_root: str | None = OutOption, check: bool = CheckOption) -> None:
    """Evaluate a model (usually with --weights) and write a run record."""
    _run(_spec({"name": name, "device": device, "data": {"source": data, "image_size": image_size},
                "model": model_block(model, weights, output_kind, mean, std, pixel_scale, input_layout, pretrained),
                "eval": {"split": split, "batch_size": batch_size, "max_samples": limit,
                         **given(positive_class=positive_class)},
                "output": {"root": out_root}}, "eval"), check)


@app.command()
def train(model: str = typer.Option(...), data: str = typer.Option(...),
          epochs: int = typer.Option(10), optimizer: Literal["sgd", "adamw"] = typer.Option("adamw"),
          lr: float | None = typer.Option(None, help="default 0.05 for sgd, 2e-3 for adamw"),
          batch_size: int = typer.Option(128), patience: int = typer.Option(5),
          augment: str = typer.Option("", help="comma-separated: flip,crop"),
          folds: int = typer.Option(1, help=">= 2 runs k-fold cross-validation"),
          weights: str | None = typer.Option(None, help="initial weights (fine-tuning)"),
          pretrained: bool = PretrainedOption,
          image_size: int | None = typer.Option(None), seed: int = typer.Option(0),
          name: str = typer.Option("train", help="run name"), device: str = DeviceOption,
          out_root: str | None = OutOption, limit: int | None = LimitOption,
          positive_class: str | None = PositiveClassOption, check: bool = CheckOption) -> None:
    """Train a model (FP32) with a validation split; keep the best checkpoint; evaluate on the test split."""
    train_block = {"enabled": True, "epochs": epochs, "optimizer": optimizer, "batch_size": batch_size,
                   "patience": patience, "folds": folds}
    if lr is not None:
        train_block["lr"] = lr
    _run(_spec({"name": name, "seed": seed, "device": device,
                "data": {"source": data, "image_size": image_size,
                         "augment": [a.strip() for a in augment.split(",") if a.strip()]},
                "model": {"name": model, "weights": weights, "pretrained": pretrained}, "train": train_block,
                "eval": {"max_samples": limit, **given(positive_class=positive_class)},
                "output": {"root": out_root}}, "train"), check)


# The recipe vocabularies (quantlens.recipes.tensor), spelled here so `quantlens --help` needs no torch;
# tests/recipes check that they match.
Mode = Literal["none", "tensor", "channel", "block"]
NormMode = Literal["none", "tensor", "channel"]
ScaleKind = Literal["fp32", "pow2"]
Rounding = Literal["nearest_even", "stochastic"]
InputOps = Literal["all", "matmul"]


@app.command()
def simulate(model: str = typer.Option(..., help=MODEL_HELP),
             data: str = typer.Option(..., help="digits | medmnist:<npz> | imagefolder:<root> | idx:<dir>"),
             weights: str | None = typer.Option(None, help="checkpoint to quantize"),
             format: str = typer.Option("int8", help="format(s), comma-separated: one simulation each; the "
                                                     "default of every role"),
             weight_format: str | None = typer.Option(None, help="default: --format"),
             weight_mode: Mode | None = typer.Option(None, help="default: channel (block for block formats)"),
             weight_block_size: int | None = typer.Option(None, "--weight-block-size", "--weight-chunk-size",
                                                          help="default: 32 (block formats fix it)"),
             input_format: str | None = typer.Option(None, help="default: --format"),
             input_mode: Mode | None = typer.Option(None, help="default: tensor (block for block formats)"),
             input_block_size: int | None = typer.Option(None, "--input-block-size", "--input-chunk-size"),
             input_ops: InputOps | None = typer.Option(None, help="default: all; matmul: only conv/linear/matmul "
                                                                  "inputs"),
             output_format: str | None = typer.Option(None, "--output-format", "--act-format",
                                                      help="default: --format"),
             output_mode: Mode | None = typer.Option(None, "--output-mode", "--act-mode",
                                                     help="layer outputs; default: none"),
             output_block_size: int | None = typer.Option(None, "--output-block-size", "--act-chunk-size"),
             norm_format: str | None = typer.Option(None, help="default: --format"),
             norm_mode: NormMode | None = typer.Option(None, "--norm-mode", "--bn-mode",
                                                       help="norm parameters and statistics; default: none"),
             scale: ScaleKind | None = typer.Option(None, help="scales of every role; default: fp32"),
             rounding: Rounding | None = typer.Option(None, help="rounding of every role; default: nearest_even"),
             observer: str | None = typer.Option(None, "--observer", "--calibration",
                                                 help="input/output ranges: max, moving_average, percentile, "
                                                      "entropy, mse (from calibration samples; `quantlens "
                                                      "observers`) or dynamic; default: max"),
             passes: str = typer.Option("", help="post-training passes in order, comma-separated (`quantlens "
                                                 "passes`), e.g. fold_bn,cle,bias_correction"),
             calibration_samples: int | None = typer.Option(None, help="default: 512"),
             first_layer: bool | None = typer.Option(None, "--first-layer/--no-first-layer",
                                                     help="quantize the first layer (default: yes)"),
             last_layer: bool | None = typer.Option(None, "--last-layer/--no-last-layer",
                                                    help="quantize the last layer (default: yes)"),
             exclude: str = typer.Option("", help="comma-separated layer-name globs left in float"),
             split: Split = typer.Option("auto", help="which samples to evaluate"),
             image_size: int | None = typer.Option(None), batch_size: int = typer.Option(256),
             name: str = typer.Option("simulate", help="run name"),
             output_kind: OutputKind = OutputKindOption, mean: str | None = MeanOption, std: str | None = StdOption,
             pixel_scale: float | None = PixelScaleOption, input_layout: Layout = LayoutOption,
             pretrained: bool = PretrainedOption,
             limit: int | None = LimitOption, positive_class: str | None = PositiveClassOption,
             device: str = DeviceOption, out_root: str | None = OutOption, check: bool = CheckOption) -> None:
    """Evaluate FP32 and simulated number formats side by side on the same samples.

    Options left out keep the recipe's defaults (a block format such as mxfp4 or nvfp4 brings its
    block mode and size); those given apply to every format."""
    shared = {"scale": scale, "rounding": rounding}
    recipes = {"weights": given(format=weight_format, mode=weight_mode, block_size=weight_block_size, **shared),
               "inputs": given(format=input_format, mode=input_mode, block_size=input_block_size,
                                observer=observer, **shared),
               "outputs": given(format=output_format, mode=output_mode, block_size=output_block_size,
                                 observer=observer, **shared),
               "norm": given(format=norm_format, mode=norm_mode, **shared)}
    entry = {"version": 2, **{role: recipe for role, recipe in recipes.items() if recipe},
             **given(input_ops=input_ops, calibration_samples=calibration_samples,
                      quantize_first_layer=first_layer, quantize_last_layer=last_layer)}
    if csv_list(exclude):
        entry["exclude"] = csv_list(exclude)
    if csv_list(passes):
        entry["passes"] = csv_list(passes)
    entries = [{**entry, "format": fmt} for fmt in csv_list(format)]
    _run(_spec({"name": name, "device": device, "data": {"source": data, "image_size": image_size},
                "model": model_block(model, weights, output_kind, mean, std, pixel_scale, input_layout, pretrained),
                "quantization": entries,
                "eval": {"split": split, "batch_size": batch_size, "max_samples": limit,
                         **given(positive_class=positive_class)},
                "output": {"root": out_root}}, "simulate"),
         check)


@app.command("export")
def export_command(target: Path = typer.Argument(..., metavar="OUT", help="the .onnx file to write"),
                   model: str = typer.Option(..., help=MODEL_HELP),
                   data: str = typer.Option(..., help="data the calibration samples come from"),
                   weights: str | None = typer.Option(None, help="checkpoint to quantize"),
                   weight_format: str = typer.Option("int8", help="int8, or int7 (7-bit weights, for CPUs "
                                                                  "without VNNI) ... int2"),
                   input_format: str = typer.Option("int8_asym", help="int8_asym (u8 with zero point) or int8"),
                   observer: str = typer.Option("max", "--observer", "--calibration",
                                                help="activation ranges: max, moving_average, percentile, "
                                                     "entropy, mse"),
                   passes: str = typer.Option("fold_bn", help="passes in order, comma-separated "
                                                              "(`quantlens passes`)"),
                   calibration_samples: int = typer.Option(512), config: Path | None = typer.Option(
                       None, help="take everything from this experiment YAML instead (its single "
                                  "quantization entry)"),
                   image_size: int | None = typer.Option(None),
                   output_kind: OutputKind = OutputKindOption, mean: str | None = MeanOption,
                   std: str | None = StdOption, pixel_scale: float | None = PixelScaleOption,
                   input_layout: Layout = LayoutOption, pretrained: bool = PretrainedOption,
                   check: bool = CheckOption) -> None:
    """Calibrate one INT8 recipe and write it as ONNX QDQ with quantlens's own scales (ONNX Runtime,
    OpenVINO and TensorRT-style runtimes execute it without re-calibrating). A model read from an ONNX
    file keeps that file's input and output."""
    if config is not None:
        from quantlens.experiments.spec import load_spec

        spec = load_spec(config)
    else:
        entry = {"version": 2, "format": weight_format, "weights": {"mode": "channel"},
                 "inputs": {"format": input_format, "mode": "tensor", "observer": observer},
                 "calibration_samples": calibration_samples, "passes": csv_list(passes)}
        spec = _spec({"name": "export", "data": {"source": data, "image_size": image_size},
                      "model": model_block(model, weights, output_kind, mean, std, pixel_scale, input_layout,
                                            pretrained),
                      "quantization": [entry]}, "export")
    if target.suffix.lower() != ".onnx":
        raise typer.BadParameter(f"{target} should end in .onnx", param_hint="OUT")
    if check:
        _check(spec)
        return
    from quantlens import events
    from quantlens.experiments.export import export_recipe
    from quantlens.experiments.record import prepare_run_root
    from quantlens.progress_view import ProgressView

    with ProgressView(err) as view, events.listening(view):
        outcome = export_recipe(spec, target, prepare_run_root(spec.output.root))
    outcome.write_details()
    for line in outcome.summary():
        out.print(line, highlight=False, markup=False, soft_wrap=True)


@app.command()
def bench(model: str = typer.Option(..., help=MODEL_HELP),
          weights: str | None = typer.Option(None, help="checkpoint (speed does not depend on it)"),
          data: str = typer.Option("synthetic", help="data for calibration, agreement checks and the pipeline "
                                                     "(default: synthetic images, no accuracy)"),
          backends: str = typer.Option("torch-fp32,torch-int8,ort-fp32,ort-int8", help="comma-separated"),
          batch_sizes: str = typer.Option("1,8,64", help="comma-separated"),
          threads: str = typer.Option("auto", help="intra-op threads, or auto (all usable cores)"),
          image_size: int | None = typer.Option(None, help="square input side"),
          num_classes: int | None = typer.Option(None, help="classes of the synthetic data (default: the "
                                                            "checkpoint's sidecar or classifier, else 1000)"),
          in_channels: int | None = typer.Option(None, help="channels of the synthetic data (default: the "
                                                            "sidecar's, else 3)"),
          rounds: int = typer.Option(10, help="interleaved rounds per batch size"),
          profile: str = typer.Option("", help="operator profiles, e.g. ort-fp32:ort-int8,torch-fp32:torch-int8"),
          stages: bool = typer.Option(True, "--stages/--no-stages", help="time the pipeline stage by stage"),
          evaluate: bool = typer.Option(False, "--eval/--no-eval", help="also evaluate accuracy on --data"),
          limit: int | None = typer.Option(None, "--limit", min=1, metavar="N",
                                           help="evaluate (--eval) and check agreement on a stratified, seeded "
                                                "subset of N samples of --data (eval.max_samples)"),
          output_kind: OutputKind = OutputKindOption, mean: str | None = MeanOption, std: str | None = StdOption,
          pixel_scale: float | None = PixelScaleOption, input_layout: Layout = LayoutOption,
             pretrained: bool = PretrainedOption,
          positive_class: str | None = PositiveClassOption,
          name: str = typer.Option("bench", help="run name"), out_root: str | None = OutOption,
          check: bool = CheckOption) -> None:
    """Latency and throughput of real backends, side by side, with confidence intervals."""
    from quantlens.experiments.bench_input import bench_input
    from quantlens.recipes.benchmark import parse_batch_sizes, parse_name_list, parse_profile_pairs, parse_threads

    if data == "synthetic":
        shape = bench_input(model, weights or None, classes=num_classes, channels=in_channels, size=image_size,
                            pretrained=pretrained)
        err.print(f"synthetic data: {shape.classes} classes, {shape.channels}x{shape.size}x{shape.size} "
                  f"(from {shape.origin})", highlight=False, markup=False)
        data = shape.data_spec()
    block = {"backends": parse_name_list(backends), "batch_sizes": parse_batch_sizes(batch_sizes),
             "threads": parse_threads(threads), "rounds": rounds, "stages": stages,
             "profile": parse_profile_pairs(profile) if profile else ()}
    _run(_spec({"name": name, "data": {"source": data, "image_size": image_size},
                "model": model_block(model, weights, output_kind, mean, std, pixel_scale, input_layout, pretrained),
                "eval": {"enabled": evaluate and not data.startswith("synthetic"), "max_samples": limit,
                         **given(positive_class=positive_class)},
                "benchmark": block, "output": {"root": out_root}}, "bench"), check)


app.registered_commands.extend(listings.registered_commands)  # schema, models, formats, observers, passes


def main() -> None:
    """Every user mistake -- a bad option as much as a bad config -- is one `error:` line and exit 2."""
    sys.exit(run_reporting_errors(app))


if __name__ == "__main__":
    main()
