"""Where timm and torchvision keep downloaded checkpoints, read without any network access."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from urllib.parse import urlparse

import torch


def torch_hub_checkpoint(url: str) -> Path:
    """Where torch.hub.load_state_dict_from_url(url) keeps its download (and where torchvision, and timm for
    weights hosted at a URL, look first): <torch.hub.get_dir()>/checkpoints/<the URL's file name>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def huggingface_hub():
    """The huggingface_hub package, or None when it does not import (timm then loads from URLs only)."""
    try:
        return importlib.import_module("huggingface_hub")
    except ImportError:
        return None


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache (HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub, as
    huggingface_hub resolves it); its package loads `constants` lazily, hence the explicit import."""
    return Path(importlib.import_module("huggingface_hub.constants").HF_HUB_CACHE)


def hf_repo_folder(repo_id: str) -> str:
    """A model repository's folder in the Hugging Face cache:
    'timm/resnet18.a1_in1k' -> 'models--timm--resnet18.a1_in1k'."""
    return "--".join(("models", *repo_id.split("/")))


def hf_cached_file(hub, repo_id: str, filenames: list[str], revision: str | None = None) -> Path | None:
    """The first of `filenames` that the local Hugging Face cache holds for `repo_id` at `revision`
    (default: the revision 'main' points to), or None."""
    for filename in filenames:
        found = hub.try_to_load_from_cache(repo_id, filename, revision=revision)
        if isinstance(found, str):  # else None (not cached) or a marker that the file does not exist
            return Path(found)
    return None
