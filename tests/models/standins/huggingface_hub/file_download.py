import os

from huggingface_hub import constants

_CACHED_NO_EXIST = object()


def try_to_load_from_cache(repo_id, filename, cache_dir=None, revision=None, repo_type=None):
    revision = revision or "main"
    repo_type = repo_type or "model"
    cache_dir = cache_dir or constants.HF_HUB_CACHE
    repo_cache = os.path.join(cache_dir, constants.REPO_ID_SEPARATOR.join([f"{repo_type}s", *repo_id.split("/")]))
    if not os.path.isdir(repo_cache):
        return None
    revision_file = os.path.join(repo_cache, "refs", revision)
    if os.path.isfile(revision_file):
        with open(revision_file) as f:
            revision = f.read()
    if os.path.isfile(os.path.join(repo_cache, ".no_exist", revision, filename)):
        return _CACHED_NO_EXIST
    snapshots = os.path.join(repo_cache, "snapshots")
    if not os.path.exists(snapshots) or revision not in os.listdir(snapshots):
        return None
    cached_file = os.path.join(snapshots, revision, filename)
    return cached_file if os.path.isfile(cached_file) else None
