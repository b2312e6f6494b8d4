"""Prefetch: download everything the config names, on a machine with internet (a cluster's login node).

:func:`plan` lists what a config needs from the network; :func:`prefetch` fetches each item through the very
function the jobs use, so the files land where the jobs look for them:

- model weights (torchvision weight names, timm ``pretrained``, Places365 checkpoints, checkpoint URLs):
  the model loader itself -> ``TORCH_HOME`` (torch.hub) or ``HF_HOME`` (timm's hub weights);
- the CLIP embedder (open_clip pretrained tags, also ``evaluate.clip_model``): :func:`load_open_clip` ->
  ``HF_HOME`` (or ``~/.cache/clip`` for URL-only tags);
- the diffusion pipeline (a hub id): ``DiffusionPipeline.download`` -> ``HF_HOME``;
- the sentence model of the final-layer metrics (``evaluate.mpnet_model``, only when a model names
  ``ground_truth``): ``huggingface_hub.snapshot_download`` -> ``HF_HOME``;
- concept lists given by ``url`` + ``sha256``: :func:`sieve.concepts.fetch_concept_list` ->
  ``resources/concepts/{name}.txt`` (checksum checked); class lists of ``models.*.ground_truth`` given the
  same way -> ``resources/ground_truth/{sha256}.txt``;
- probe sets with ``download: true`` (places365, imagenette): the probe loader -> their ``path``.

Local files, ``python`` factories and the synthetic world need nothing. Every item is fetched on its own;
a failure is reported with the others and does not undo the downloads that succeeded (a rerun skips them).
Jobs then run with ``offline: true`` and fail at once, naming the item, if anything is still missing
(:mod:`sieve.backends.offline`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .backends.refs import parse_ref
from .config import schema_default

log = logging.getLogger(__name__)

DOWNLOADABLE_PROBES = ("places365", "imagenette")


class PrefetchError(RuntimeError):
    """Some items could not be fetched: the message lists each one with its error."""


@dataclass(frozen=True)
class Item:
    """One thing to download: ``kind`` (model, embedder, generator, sentence_model, concept_set, probe),
    the config ``key`` it comes from, ``ref`` (weights name, hub id or URL) and the cache it goes to."""

    kind: str
    key: str
    ref: str
    cache: str
    spec: dict[str, Any]


def _model_item(name: str, spec: dict[str, Any]) -> Item | None:
    source, weights = spec.get("source"), spec.get("weights")
    key = f"models.{name}"
    ref = parse_ref(weights, hub_ids=False) if weights else None
    if source == "places365":
        arch = spec.get("arch", "resnet18")
        if ref is not None and ref.kind != "url":
            return None  # a local checkpoint
        from .backends.models import PLACES365_URL

        return Item("model", key, weights or PLACES365_URL.format(arch=arch), "TORCH_HOME", spec)
    if source not in ("torchvision", "timm") or weights in (None, "none", "random"):
        return None
    if ref.kind == "url":
        return Item("model", key, weights, "TORCH_HOME", spec)
    if source == "timm":
        if weights != "pretrained":
            return None  # a local checkpoint
        from .backends.offline import timm_weights_source

        kind, ref = timm_weights_source(spec.get("arch", ""))
        return Item("model", key, ref, "HF_HOME" if kind == "hf" else "TORCH_HOME", spec)
    if ref.kind != "name":
        return None  # a local checkpoint
    return Item("model", key, f"torchvision {spec.get('arch')} {weights}", "TORCH_HOME", spec)


def _clip_item(key: str, spec: dict[str, Any] | None) -> Item | None:
    if not spec or spec.get("source") != "open_clip":
        return None
    pretrained = spec.get("pretrained")
    if not pretrained or parse_ref(pretrained, hub_ids=False).kind != "name" or spec.get("model_config"):
        return None  # random weights, a local checkpoint, or a custom architecture
    return Item("embedder", key, f"open_clip {spec.get('arch')}/{pretrained}", "HF_HOME", spec)


def plan(config: dict[str, Any]) -> list[Item]:
    """What ``config`` needs from the network, in a stable order; nothing is downloaded or loaded."""
    items: list[Item | None] = []
    for name in sorted(config.get("models", {})):
        items.append(_model_item(name, config["models"][name]))
    items.append(_clip_item("embedder", config.get("embedder")))
    gen = config.get("generator") or {}
    if gen.get("source", schema_default("generator.source")) == "diffusers" and gen.get("model"):
        from .backends.generators import local_folder

        if local_folder(str(gen["model"])) is None:
            items.append(
                Item("generator", "generator.model", parse_ref(str(gen["model"])).value, "HF_HOME", gen)
            )
    if any(m.get("ground_truth") for m in config.get("models", {}).values()):
        evaluate = config.get("evaluate") or {}
        clip = evaluate.get("clip_model")
        if clip and clip != config.get("embedder"):
            items.append(_clip_item("evaluate.clip_model", clip))
        mpnet = evaluate.get("mpnet_model")
        if isinstance(mpnet, dict):  # an embedder's text side (a world with no sentence model)
            if mpnet != config.get("embedder") and mpnet.get("source", "open_clip") == "open_clip":
                items.append(_clip_item("evaluate.mpnet_model", mpnet))
        elif mpnet and parse_ref(mpnet).kind == "hub":
            hub_id = parse_ref(mpnet).value
            items.append(Item("sentence_model", "evaluate.mpnet_model", hub_id, "HF_HOME", {"model": mpnet}))
    for name in sorted(config.get("models", {})):
        gt = config["models"][name].get("ground_truth")
        if isinstance(gt, dict):
            items.append(
                Item("ground_truth", f"models.{name}.ground_truth", gt["url"], "resources/ground_truth", gt)
            )
    for name in sorted(config.get("concept_sets", {})):
        spec = config["concept_sets"][name]
        if "url" in spec:
            items.append(
                Item(
                    "concept_set",
                    f"concept_sets.{name}",
                    spec["url"],
                    "resources/concepts",
                    {**spec, "name": name},
                )
            )
    for name in sorted(config.get("probes", {})):
        spec = config["probes"][name]
        if spec.get("kind") in DOWNLOADABLE_PROBES and spec.get("download"):
            items.append(
                Item(
                    "probe",
                    f"probes.{name}",
                    f"{spec['kind']} {spec.get('split', 'val')}",
                    spec.get("path", ""),
                    {**spec, "name": name},
                )
            )
    return [i for i in items if i is not None]


# ----------------------------------------------------------------------------------------------------------
# fetchers: each goes through the loader the jobs use


def _fetch_model(item: Item, resources_dir: Path) -> None:
    from .backends.models import MODELS, load_checkpoint

    if parse_ref(item.ref, hub_ids=False).kind == "url" and item.spec.get("source") != "places365":
        load_checkpoint(item.ref)
    else:
        MODELS.get(item.spec["source"])(item.spec)


def _fetch_embedder(item: Item, resources_dir: Path) -> None:
    from .backends.embedders import load_open_clip

    load_open_clip(item.spec.get("arch", ""), item.spec.get("pretrained"), None, "cpu")


def _fetch_generator(item: Item, resources_dir: Path) -> None:
    from diffusers import DiffusionPipeline

    kwargs = {
        k: v
        for k, v in (item.spec.get("kwargs") or {}).items()
        if k in ("variant", "revision", "use_safetensors")
    }
    DiffusionPipeline.download(item.ref, **kwargs)


def _fetch_sentence_model(item: Item, resources_dir: Path) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download(item.ref)


def _fetch_concept_set(item: Item, resources_dir: Path) -> None:
    from .concepts import fetch_concept_list

    fetch_concept_list(item.spec["url"], item.spec["sha256"], resources_dir / f"{item.spec['name']}.txt")


def _fetch_ground_truth(item: Item, resources_dir: Path) -> None:
    """Into ``resources/ground_truth/{sha256}.txt`` (beside ``resources/concepts``), where rule
    ``ground_truth_list`` looks first."""
    from .concepts import fetch_concept_list

    digest = item.spec["sha256"]
    fetch_concept_list(
        item.spec["url"], digest, resources_dir.parent / "ground_truth" / f"{digest}.txt", what="class list"
    )


def _fetch_probe(item: Item, resources_dir: Path) -> None:
    from .backends.imagesets import open_image_set

    spec = {k: v for k, v in item.spec.items() if k != "name"}
    open_image_set(item.spec["name"], spec)


FETCHERS: dict[str, Callable[[Item, Path], None]] = {
    "model": _fetch_model,
    "embedder": _fetch_embedder,
    "generator": _fetch_generator,
    "sentence_model": _fetch_sentence_model,
    "concept_set": _fetch_concept_set,
    "ground_truth": _fetch_ground_truth,
    "probe": _fetch_probe,
}


def prefetch(
    config: dict[str, Any], resources_dir: str | os.PathLike[str] = "resources/concepts"
) -> list[dict]:
    """Fetch every item of :func:`plan` (online, whatever ``offline`` says); returns one record per item.
    Raises :class:`PrefetchError` listing every item that failed, after trying all of them."""
    from .backends.offline import is_offline

    if is_offline():
        raise PrefetchError(
            "prefetch needs the network but offline mode is on (SIEVE_OFFLINE/HF_HUB_OFFLINE); "
            "unset it for the prefetch run"
        )
    resources = Path(resources_dir)
    records, failures = [], []
    for item in plan(config):
        t0 = time.monotonic()
        log.info("prefetch %s %s: %s -> %s", item.kind, item.key, item.ref, item.cache)
        record = {k: v for k, v in asdict(item).items() if k != "spec"}
        try:
            FETCHERS[item.kind](item, resources)
        except Exception as exc:  # noqa: BLE001 - report every failure, keep what succeeded
            log.error("prefetch %s failed: %s", item.key, exc)
            failures.append(f"{item.key} ({item.ref}): {exc}")
            record["status"] = "failed"
            record["error"] = str(exc)
        else:
            record["status"] = "ok"
        record["seconds"] = round(time.monotonic() - t0, 2)
        records.append(record)
    if failures:
        raise PrefetchError(
            f"{len(failures)} of {len(records)} items could not be fetched:\n  " + "\n  ".join(failures)
        )
    log.info("prefetch: %d items in the caches", len(records))
    return records


def cache_locations() -> dict[str, str]:
    """The cache folders this process uses (written to the manifest, so a user can check the compute nodes
    see the same ones)."""
    from .backends.offline import hf_hub_cache, torch_hub_dir

    return {"TORCH_HOME": str(torch_hub_dir().parent), "HF_HUB_CACHE": str(hf_hub_cache())}
