"""Offline mode for compute nodes without internet.

``snakemake prefetch`` (run on a login node) downloads every weight, pipeline, concept list and downloadable
probe set the config names into the caches (``TORCH_HOME``, ``HF_HOME``, ``resources/``). Jobs then run with
``config['offline']: true`` (which sets ``SIEVE_OFFLINE=1``, ``HF_HUB_OFFLINE=1`` and
``TRANSFORMERS_OFFLINE=1``), and anything still missing fails at once, naming the weight and the prefetch
command, rather than after a network timeout.
"""

from __future__ import annotations

import os

from . import BackendError

PREFETCH_HINT = "run `snakemake prefetch --cores 1` on a machine with internet (a login node) first"


def is_offline() -> bool:
    return any(os.environ.get(v, "") not in ("", "0") for v in ("SIEVE_OFFLINE", "HF_HUB_OFFLINE"))


def set_offline(enabled: bool) -> None:
    if enabled:
        for var in ("SIEVE_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            os.environ[var] = "1"


def require_online(url: str, what: str, cached: bool = False) -> None:
    """Raise at once if ``url`` must be downloaded while offline."""
    if is_offline() and not cached:
        raise BackendError(f"{what} ({url}) is not in the local cache and this job runs offline; {PREFETCH_HINT}")


def require_hub(repo_id: str, what: str) -> None:
    """Raise at once if a Hugging Face hub repo is not cached while offline."""
    if not is_offline() or os.path.isdir(os.path.expanduser(repo_id)):
        return
    try:
        from huggingface_hub import scan_cache_dir

        cached = {r.repo_id for r in scan_cache_dir().repos}
    except Exception:  # noqa: BLE001 - no cache dir at all
        cached = set()
    if repo_id not in cached:
        raise BackendError(f"{what} {repo_id!r} is not in the Hugging Face cache and this job runs offline; "
                           f"{PREFETCH_HINT}")
