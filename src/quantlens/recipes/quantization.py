"""The simulated-quantization recipe: which tensors of which layers get which number format.

One tensor recipe per role (`quantlens.recipes.tensor`): `weights`, `inputs` (layer inputs),
`outputs` (layer outputs; off by default) and `norm` (normalisation parameters with BatchNorm
running statistics; off by default). A role's format defaults to the entry's `format`; a block
format brings its block mode and size. Entry-wide settings: `input_ops` (`matmul` limits input
quantization to convolutions, linear layers and matmuls), `calibration_samples`, `overflow`, and
layer selection: `include`/`exclude` globs on layer names, `quantize_first_layer` /
`quantize_last_layer`, and `overrides` that change any recipe field for the layers they match by
name glob or module type (merged field by field, in order: a later match wins).

Version 2; version-1 entries (flat `weight_mode`, `input_format`, ... keys) are read through
`quantlens.recipes.migration`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from quantlens.formats import IntFormat, get_format
from quantlens.recipes.base import Block
from quantlens.recipes.migration import migrate_quantization_entry
from quantlens.recipes.tensor import (
    RECIPE_CLASSES,
    NormPatch,
    NormRecipe,
    RecipePatch,
    TensorRecipe,
    check_format,
)

ROLES = ("weights", "inputs", "outputs", "norm")
QUANTIZATION_VERSION = 2
LABEL_PREFIXES = {"weights": "w", "inputs": "in", "outputs": "out", "norm": "bn"}  # labels as in version 1


def _located(exc: ValidationError, *loc: str | int) -> ValidationError:
    """The same errors, located under `loc` (a validator raising it nests them under its own place)."""
    return ValidationError.from_exception_data(exc.title, [
        {"type": "value_error", "loc": (*loc, *e["loc"]), "input": e.get("input"),
         "ctx": {"error": ValueError(str(e["msg"]).removeprefix("Value error, "))}} for e in exc.errors()])


# where `deploy:` runs a recipe (experiments.deploy_targets)
DeployRuntime = Literal["onnxruntime", "openvino", "pytorch"]

class Override(Block):
    """Recipe changes for the layers whose name matches `match` (a glob) and/or whose type is `type`."""

    match: str | None = Field(None, description="glob on the layer name, e.g. 'layer3.*' or '*.attn.*'")
    type: str | None = Field(None, description="module class name, e.g. 'Linear', 'MatMul', 'Softmax'")
    skip: bool = Field(False, description="leave the matched layers in float")
    weights: RecipePatch = RecipePatch()
    inputs: RecipePatch = RecipePatch()
    outputs: RecipePatch = RecipePatch()
    norm: NormPatch = NormPatch()

    @model_validator(mode="after")
    def _selects_something(self) -> Override:
        if self.match is None and self.type is None:
            raise ValueError("an override needs 'match' (a name glob) or 'type' (a module class name)")
        return self

    @property
    def turns_on_inputs(self) -> bool:
        """Whether it asks for input quantization (a mode or format), which then applies to layer types
        that keep their inputs in float by default (ReLU, pooling)."""
        return bool({"mode", "format"} & set(self.inputs.given()))

    def apply(self, recipes: dict[str, TensorRecipe]) -> dict[str, TensorRecipe]:
        """`recipes` (role -> recipe) with this override's patches merged in; ValidationError, located
        at the role, when a merged recipe is impossible (a block format with mode 'tensor')."""
        merged = dict(recipes)
        for role in ROLES:
            patch = getattr(self, role).given()
            if patch:
                cls = RECIPE_CLASSES[role]
                try:
                    merged[role] = cls.model_validate(cls.derive(recipes[role].model_dump(), patch))
                except ValidationError as exc:
                    raise _located(exc, role) from None
        return merged

    @model_serializer(mode="wrap")
    def _only_given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # `{match: 'layer3.*', weights: {format: int4}}` rather than every role and selector spelled out
        return {k: v for k, v in handler(self).items() if v not in (None, {})}


class PassStep(Block):
    """One post-training pass of a recipe, by registered name (`quantlens passes`), with its options."""

    name: str = Field(description="a registered pass: fold_bn, cle, bias_correction, adaround, ...")
    options: dict[str, int | float | str | bool] = Field(default_factory=dict,
                                                         description="the pass's options, e.g. {iterations: 500}")

    @field_validator("name")
    @classmethod
    def _known_pass(cls, value: str) -> str:
        from quantlens.passes.registry import PASSES  # noqa: PLC0415  (passes import the model zoo's layers)

        if value not in PASSES:
            raise ValueError(PASSES.unknown_message(value))
        return value


class QuantizationConfig(Block):
    version: Literal[2] = Field(QUANTIZATION_VERSION, description="schema version of this entry (1 is read "
                                                                  "and migrated)")
    name: str = Field("", description="label in tables; default: derived from the recipes")
    format: str = Field("int8", description="default format of every role")
    weights: TensorRecipe = Field(TensorRecipe(mode="channel"), description="weights of convolutions, linear "
                                                                            "layers, embeddings")
    inputs: TensorRecipe = Field(TensorRecipe(mode="tensor"), description="layer inputs (see input_ops)")
    outputs: TensorRecipe = Field(TensorRecipe(mode="none"), description="layer outputs (off by default)")
    norm: NormRecipe = Field(NormRecipe(), description="normalisation parameters and BatchNorm running "
                                                       "statistics (off by default)")
    input_ops: Literal["all", "matmul"] = Field(
        "all", description="whose inputs are quantized: 'all' (every layer type that quantizes its inputs by "
                           "default, residual adds, pools and softmax included) or 'matmul' (only convolutions, "
                           "linear layers and matmuls: the operands FP8 and MX/NVFP4 hardware multiplies in low "
                           "precision, while adds, pools and softmax run in higher precision)")
    calibration_samples: int = Field(512, gt=0, description="samples that calibrate static ranges and feed the "
                                                            "passes (never evaluated)")
    calibration_batch_size: int = Field(32, gt=0, description="calibration batch size; a calibration set smaller "
                                                               "than one batch is refused")
    calibration_seed: int = Field(0, description="which calibration samples are drawn (when the pool is larger "
                                                 "than calibration_samples) and the passes' own randomness")
    passes: tuple[PassStep, ...] = Field((), description="post-training passes in order, by name or as {name, "
                                                         "options}: e.g. [fold_bn, cle, bias_correction] or "
                                                         "[fold_bn, {name: adaround, options: {iterations: 500}}]")
    simulation: Literal["fake_quant", "deployment"] = Field(
        "fake_quant", description="'deployment': the model evaluated is what ONNX Runtime computes from its QDQ "
                                  "export: QuantizeLinear divides by the scale and rounds half to even, fused layers "
                                  "accumulate exactly in int32 and requantize; the fake-quant layers also divide")
    deploy: tuple[DeployRuntime, ...] = Field(
        (), description="deploy this recipe with its own scales and evaluate it on these runtimes: static ranges as "
                        "ONNX QDQ (onnxruntime, openvino) or PyTorch x86 INT8 (pytorch); dynamic ranges "
                        "(observer: dynamic) as dynamic INT8 Linears (onnxruntime, pytorch)")
    overflow: Literal["saturate", "inf_nan"] = Field(
        "saturate", description="values beyond the largest finite value clamp to it, or become Inf/NaN where the "
                                "format has them (integers and formats without Inf/NaN always saturate)")
    quantize_first_layer: bool = True
    quantize_last_layer: bool = True
    include: tuple[str, ...] = Field((), description="globs on layer names; empty: every supported layer")
    exclude: tuple[str, ...] = Field((), description="globs on layer names left in float")
    overrides: tuple[Override, ...] = ()

    @model_validator(mode="after")
    def _adaround_needs_integer_weights(self) -> QuantizationConfig:
        if any(step.name == "adaround" for step in self.passes) and self.weights.mode != "none":
            fmt = get_format(self.weights.format)
            if not isinstance(fmt, IntFormat):
                raise ValueError(f"passes: adaround learns the rounding of integer weights; weights.format "
                                 f"{fmt.name} is not an integer format (AdaRound does not apply to float formats)")
        return self

    @field_validator("passes", mode="before")
    @classmethod
    def _pass_names(cls, value: Any) -> Any:
        # `passes: [fold_bn]` is short for `passes: [{name: fold_bn}]`
        if isinstance(value, (list, tuple)):
            return tuple({"name": step} if isinstance(step, str) else step for step in value)
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _migrated_with_role_defaults(cls, values: Any, handler: Any) -> QuantizationConfig:
        """Version 1 read as version 2 (the notes: `migration_notes`), then each role's recipe derived
        from what is written of it and the entry's format (`TensorRecipe.derive`)."""
        if isinstance(values, dict):
            values, _ = migrate_quantization_entry(values)
            entry_format = values.get("format", cls.model_fields["format"].default)
            values = dict(values)
            for role in ROLES:
                written = values.get(role, {})
                if isinstance(written, TensorRecipe):  # built in code: what its caller gave
                    written = written.model_dump(exclude_unset=True)
                if isinstance(written, dict):  # anything else is refused by the field, with its name
                    recipe = RECIPE_CLASSES[role]
                    values[role] = recipe.derive(recipe.role_base(role, entry_format), written)
        return handler(values)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        return check_format(value)

    @model_validator(mode="after")
    def _overrides_fit(self) -> QuantizationConfig:
        """Every override, merged into this entry's recipes, gives possible recipes (checked here, before
        any model is seen; overrides that match the same layer are merged in order when planning)."""
        for i, override in enumerate(self.overrides):
            try:
                override.apply(self.recipes())
            except ValidationError as exc:
                raise _located(exc, "overrides", i) from None
        return self

    def recipes(self) -> dict[str, TensorRecipe]:
        """role -> this entry's recipe (before overrides)."""
        return {role: getattr(self, role) for role in ROLES}

    def editable_values(self) -> dict[str, Any]:
        """This entry as a mapping that validates back to it, without the recipe values its formats imply:
        a sweep that changes `format` (or a role's format) there gets the defaults the new format brings."""
        values = self.model_dump()
        for role in ROLES:
            recipe = getattr(self, role)
            kept = recipe.implied_omitted(type(recipe).role_base(role, self.format))
            if kept:
                values[role] = kept
            else:
                del values[role]
        return values

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        parts = []
        for role, short in LABEL_PREFIXES.items():
            recipe = getattr(self, role)
            if recipe.mode == "none":
                continue
            size = f"{recipe.block_size}" if recipe.mode == "block" else ""
            parts.append(f"{short}:{recipe.format}/{recipe.mode}{size}")
        if self.input_ops == "matmul" and self.inputs.mode != "none":
            parts.append("in:matmul-only")
        return " ".join(parts) or "float"
