"""Offline mode for compute nodes without internet.

``snakemake prefetch`` (run on a login node) downloads every weight, pipeline, concept list and downloadable
probe set the config names into the caches (``TORCH_HOME``, ``HF_HOME``, ``resources/``). Jobs then run with
``config['offline']: true`` (which sets ``SIEVE_OFFLINE=1``, ``HF_HUB_OFFLINE=1`` and
``TRANSFORMERS_OFFLINE=1``), and anything still missing fails at once, naming the weight and the prefetch
command, rather than after a network timeout.

The checks look where the loaders look: torch.hub's ``checkpoints`` folder under ``TORCH_HOME`` (torchvision,
Places365 and other checkpoint URLs) and the Hugging Face hub cache under ``HF_HUB_CACHE`` / ``HF_HOME``
(timm, open_clip, diffusers). Both are read from the environment at call time.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import BackendError

OFFLINE_VARS = ("SIEVE_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
PREFETCH_HINT = (
    "run `snakemake prefetch --cores 1` with the same config and the same HF_HOME/TORCH_HOME on a "
    "machine with internet (a login node) first"
)


def is_offline() -> bool:
    return any(os.environ.get(v, "") not in ("", "0") for v in ("SIEVE_OFFLINE", "HF_HUB_OFFLINE"))


def set_offline(enabled: bool) -> None:
    """Switch offline mode on or off for this process (before huggingface_hub is imported, which reads
    ``HF_HUB_OFFLINE`` once)."""
    for var in OFFLINE_VARS:
        if enabled:
            os.environ[var] = "1"
        else:
            os.environ.pop(var, None)


def torch_hub_dir() -> Path:
    """torch.hub's folder (``$TORCH_HOME/hub``, default ``~/.cache/torch/hub``), read from the environment."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(os.path.expanduser(home)) / "hub"


def torch_hub_cached(url: str) -> bool:
    """Whether ``torch.hub.load_state_dict_from_url(url)`` would find its file without downloading."""
    return (torch_hub_dir() / "checkpoints" / os.path.basename(url.split("?")[0])).is_file()


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache (``HF_HUB_CACHE``, else ``$HF_HOME/hub``), read from the environment."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expanduser(os.environ["HF_HUB_CACHE"]))
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(os.path.expanduser(home)) / "hub"


def hf_cached(repo_id: str) -> bool:
    """Whether a hub model repo has at least one snapshot with files in the cache."""
    snapshots = hf_hub_cache() / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(any(s.iterdir()) for s in snapshots.iterdir() if s.is_dir())


def require_online(url: str, what: str, cached: bool | None = None) -> None:
    """Raise at once if ``url`` must be downloaded while offline. ``cached=None``: the file counts as cached
    if torch.hub's checkpoints folder holds it (where ``load_state_dict_from_url`` keeps downloads)."""
    if cached is None:
        cached = "://" in url and torch_hub_cached(url)
    if is_offline() and not cached:
        raise BackendError(
            f"{what} ({url}) is not in the local cache and this job runs offline; {PREFETCH_HINT}"
        )


def require_hub(repo_id: str, what: str) -> None:
    """Raise at once if a Hugging Face hub repo is not cached while offline (``repo_id``: a hub id, as
    :func:`~.refs.parse_ref` tells; local folders never get here)."""
    if not is_offline():
        return
    if not hf_cached(repo_id):
        raise BackendError(
            f"{what} {repo_id!r} is not in the Hugging Face cache ({hf_hub_cache()}) and this job "
            f"runs offline; {PREFETCH_HINT}"
        )


def timm_weights_source(arch: str) -> tuple[str, str]:
    """Where ``timm.create_model(arch, pretrained=True)`` gets its weights: ``("hf", repo_id)`` or
    ``("url", url)``. ``arch`` may carry a pretrained tag (``resnet18.a1_in1k``)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    if cfg is None:
        raise BackendError(
            f"timm arch {arch!r} has no pretrained weights (use weights: none or a local file)"
        )
    if cfg.hf_hub_id:
        return "hf", cfg.hf_hub_id.split(":")[0]
    if cfg.url:
        return "url", cfg.url
    raise BackendError(f"timm arch {arch!r}: its pretrained weights have neither a hub id nor a URL")


def require_timm(arch: str) -> None:
    """Raise at once if timm's pretrained weights for ``arch`` are not cached while offline."""
    if not is_offline():
        return
    kind, ref = timm_weights_source(arch)
    if kind == "hf":
        require_hub(ref, f"timm weights of {arch}")
    else:
        require_online(ref, f"timm weights of {arch}")
