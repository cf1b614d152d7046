"""Turn a QuantizationConfig into per-layer plans for `quantlens.nn.quantize_model`.

Selection order for each layer of a registered type: include globs, exclude globs, the first/last
weighted layer switches, `input_ops` (which layer types quantize their inputs by default), then
overrides in order (matched by name glob and/or module type; each merges its recipe fields into
the layer's recipes, so a later match wins field by field; `skip` leaves the layer in float).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from pydantic import ValidationError
from torch import nn

from quantlens.formats import IntFormat, get_format
from quantlens.nn.registry import LayerKind, kind_of
from quantlens.nn.spec import LayerPlan, TensorSpec
from quantlens.nn.wrapper import QuantWrapper
from quantlens.recipes.quantization import QuantizationConfig
from quantlens.recipes.tensor import DYNAMIC, TensorRecipe


@dataclass
class ModelPlan:
    """Per-layer plans, plus what was left in float and why (for the coverage report)."""

    layers: dict[str, LayerPlan] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # layer -> reason
    unsupported: list[str] = field(default_factory=list)  # leaf modules with parameters and no quantized form
    # selection keys whose pattern matched no candidate layer, e.g. "include.0", "overrides.1"
    unmatched: dict[str, str] = field(default_factory=dict)  # config field -> what it asked for
    # overrides each valid alone whose merge on one layer is not, e.g. "overrides.1" -> why
    conflicts: dict[str, str] = field(default_factory=dict)
    candidates: int = 0  # layers of a quantizable type

    def problem(self) -> tuple[str, str] | None:
        """(config field, why) when the selection is surely a mistake: a pattern matching no layer,
        overrides that merge into an impossible recipe on some layer, or no layer quantized at all (a
        result labelled with a format would describe a float model)."""
        if self.unmatched:
            where, what = next(iter(self.unmatched.items()))
            return where, f"{what} matches none of the {self.candidates} quantizable layers"
        if self.conflicts:
            return next(iter(self.conflicts.items()))
        if not self.layers:
            reasons = sorted(set(self.skipped.values()))
            return "", f"quantizes no layer ({'; '.join(reasons[:3]) or 'no quantizable layer in the model'})"
        return None


def _matches(name: str, module: nn.Module, kind: LayerKind, match: str | None, type_name: str | None) -> bool:
    if match is not None and not fnmatch.fnmatchcase(name, match):
        return False
    return type_name is None or type_name in (type(module).__name__, kind.name)


def _spec(recipe: TensorRecipe, cfg: QuantizationConfig) -> TensorSpec | None:
    if recipe.mode == "none":
        return None
    static = recipe.observer != DYNAMIC
    return TensorSpec(recipe.format, recipe.mode, recipe.block_size, recipe.scale, static=static,
                      rounding=recipe.rounding, saturate=cfg.overflow == "saturate",
                      observer=recipe.observer if static else "max",
                      observer_options=tuple(sorted(recipe.observer_options.items())), mx_rule=recipe.mx_rule,
                      divide=cfg.simulation == "deployment" and isinstance(get_format(recipe.format), IntFormat))


def _layer_plan(name: str, module: nn.Module, kind: LayerKind, cfg: QuantizationConfig,
                conflicts: dict[str, str]) -> LayerPlan | str:
    """The plan of one layer, or the reason it stays in float (a conflict of overrides is recorded in
    `conflicts` and leaves the layer in float)."""
    recipes = cfg.recipes()
    inputs_asked = False
    merged: list[str] = []  # the overrides merged so far, for messages
    for i, override in enumerate(cfg.overrides):
        if _matches(name, module, kind, override.match, override.type):
            if override.skip:
                return f"override (match={override.match}, type={override.type}) skips it"
            try:
                recipes = override.apply(recipes)
            except ValidationError as exc:  # each override alone was checked when the config was built
                error = exc.errors()[0]
                role = ".".join(str(p) for p in error["loc"])
                why = str(error["msg"]).removeprefix("Value error, ")
                conflicts.setdefault(f"overrides.{i}", f"merged after {', '.join(merged)} on layer {name!r}, "
                                                       f"gives {role} an impossible recipe ({why})")
                return "conflicting overrides"
            merged.append(f"overrides.{i}")
            inputs_asked = inputs_asked or override.turns_on_inputs
    weights = _spec(recipes["weights"], cfg) if kind.weight_params else None
    inputs_by_default = kind.quantize_inputs and (cfg.input_ops == "all" or kind.matmul)
    inputs = _spec(recipes["inputs"], cfg) if inputs_by_default or inputs_asked else None
    norm = _spec(recipes["norm"], cfg) if kind.norm_params else None
    return LayerPlan(weights=weights, inputs=inputs, outputs=_spec(recipes["outputs"], cfg), norm=norm)


def plan_layers(model: nn.Module, cfg: QuantizationConfig) -> ModelPlan:
    plan = ModelPlan()
    candidates = []
    for name, module in model.named_modules():
        if not name or isinstance(module, QuantWrapper):
            continue
        kind = kind_of(module)
        if kind is None:
            has_params = any(True for _ in module.parameters(recurse=False))
            if has_params and not any(True for _ in module.children()):
                plan.unsupported.append(f"{name} ({type(module).__name__})")
            continue
        candidates.append((name, module, kind))
    plan.candidates = len(candidates)
    _find_unmatched(plan, candidates, cfg)
    weighted = [name for name, _, kind in candidates if kind.weight_params]
    first, last = (weighted[0], weighted[-1]) if weighted else (None, None)
    for name, module, kind in candidates:
        if cfg.include and not any(fnmatch.fnmatchcase(name, g) for g in cfg.include):
            plan.skipped[name] = "not in include"
        elif any(fnmatch.fnmatchcase(name, g) for g in cfg.exclude):
            plan.skipped[name] = "excluded"
        elif name == first and not cfg.quantize_first_layer:
            plan.skipped[name] = "first layer (quantize_first_layer: false)"
        elif name == last and not cfg.quantize_last_layer:
            plan.skipped[name] = "last layer (quantize_last_layer: false)"
        else:
            result = _layer_plan(name, module, kind, cfg, plan.conflicts)
            if isinstance(result, str):
                plan.skipped[name] = result
            elif result.active:
                plan.layers[name] = result
            else:
                plan.skipped[name] = "nothing to quantize with these settings"
    return plan


def _find_unmatched(plan: ModelPlan, candidates: list[tuple[str, nn.Module, LayerKind]],
                    cfg: QuantizationConfig) -> None:
    for key, globs in (("include", cfg.include), ("exclude", cfg.exclude)):
        for i, glob in enumerate(globs):
            if not any(fnmatch.fnmatchcase(name, glob) for name, _, _ in candidates):
                plan.unmatched[f"{key}.{i}"] = f"{key} pattern {glob!r}"
    for i, override in enumerate(cfg.overrides):
        if not any(_matches(name, module, kind, override.match, override.type) for name, module, kind in candidates):
            plan.unmatched[f"overrides.{i}"] = (f"override (match={override.match!r}, type={override.type!r})")
