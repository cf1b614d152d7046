import os

default_home = os.path.join(os.path.expanduser("~"), ".cache")
HF_HOME = os.path.expandvars(os.path.expanduser(os.getenv(
    "HF_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", default_home), "huggingface"))))
HF_HUB_CACHE = os.path.expandvars(os.path.expanduser(os.getenv("HF_HUB_CACHE", os.path.join(HF_HOME, "hub"))))
REPO_ID_SEPARATOR = "--"
