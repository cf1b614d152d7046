"""Datasets: one registry of loaders, a transform chain, splits and in-memory batching."""

from quantlens.data import digits, idx, imagefolder, medmnist, synthetic  # noqa: F401  (register the loaders)
from quantlens.data.loader import PreparedData
from quantlens.data.registry import DATASETS, load_source, parse_spec
from quantlens.data.source import ImageSource, Normalization
from quantlens.data.splits import Split, holdout_split, kfold_splits
from quantlens.data.transforms import Augmentation, Preprocessing

__all__ = ["DATASETS", "Augmentation", "ImageSource", "Normalization", "Preprocessing", "PreparedData",
           "Split", "holdout_split", "kfold_splits", "load_source", "parse_spec"]
