"""Model transformations applied before quantization."""

from quantlens.passes.functional_to_modules import ModularizeResult, functional_to_modules

__all__ = ["ModularizeResult", "functional_to_modules"]
