"""Module forms of functional operations, and (later) fake-quant wrappers keyed by float module type."""
