"""Verify stage: generate images of every hypothesised concept, measure the neurons on them, Activation Rate.

Three steps, three rules (``workflow/rules/verify.smk``):

1. :func:`run_requests` gathers every distinct concept that any hypotheses folder names (all models, probes,
   concept sets and baseline methods) into ``results/generate/requests.json``. A concept's prompt is the
   ``generator.prompt`` template filled with its text; its shard is ``stable_hash(prompt) mod shards``, so it
   does not depend on which other concepts exist.
2. :func:`run_shard` (one job per shard, on a GPU) loads the generator and every configured target model once,
   generates the shard's missing (prompt, seed) images in batches, resizes each batch on the device to every
   model's input and records the pooled activation of every neuron of the analysed layer. Results go to a
   content-addressed cache and a manifest ``results/generate/shards/{shard}.json`` lists them.
3. :func:`run_activation_rate` (one CPU job per model/probe/concept set, or per baseline method) computes
   AR = share of a concept's images on which the neuron's pooled activation is above its probe threshold
   (the 99th percentile from Select), filters at the initial mean AR and writes ``ar.csv``, ``summary.json``,
   ``neuron_concepts.csv`` and ``generated.json``.

Cache layout (``results/generate/cache/``; no concept text ever appears in a path)::

    {generator_key}/{prompt_key[:2]}/{prompt_key}/
        prompt.json                 the prompt and the generator settings
        acts/{model_key}.npz        seeds [n] int64, pooled [n, C] float32 (one row per image)
        thumbs/{seed}.jpg           keep_images: thumbnails (thumbnail_size px JPEG)
        images/{seed}.png           keep_images: full

``generator_key`` hashes the settings that change pixels (source, model and a fingerprint of a local folder,
steps, guidance, resolution, resolved dtype, factory kwargs), ``prompt_key`` the prompt, ``model_key`` the target
model's spec and resolved dtype. Seeds are ``generator.seed + i`` for image i, so raising
``images_per_concept`` only generates the new seeds. Every file is written under a temporary name and renamed;
``acts`` is written last and is the completion marker, so a killed shard loses at most the concepts in flight,
and the rerun deletes leftover temporary files before it regenerates them (a job that shares the cache and
finds its temporary file deleted that way writes it again).

Images are quantised to 8 bits before they are measured (what any saved image holds), so activations measured
on the fly equal those measured later from ``keep_images: full`` PNGs (used when a model is added).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .backends import activation_spec
from .io import atomic_path, dumps, local_file_fingerprints, read_json, stable_hash, write_csv, write_json

log = logging.getLogger(__name__)

AR_COLUMNS = ["neuron", "cluster", "concept", "concept_id", "rank", "score", "n_images", "n_active", "ar", "kept"]
NEURON_COLUMNS = ["neuron", "status", "n_hypotheses", "n_verified", "best_concept", "best_ar", "concepts", "ars",
                  "concept_ids", "ratio", "threshold"]


class VerifyError(ValueError):
    """Bad or missing input for Verify: the message names the file, neuron and concept."""


# ----------------------------------------------------------------------------------------------------------
# pure functions


def prompt_for(template: str, text: str) -> str:
    """Fill every ``{}`` of the prompt template with the concept text (the text is never format-parsed)."""
    return template.replace("{}", text)


def prompt_key(prompt: str) -> str:
    return stable_hash("prompt", prompt, n=24)


def shard_of(prompt: str, n_shards: int) -> int:
    """The shard of a prompt: a stable hash mod ``n_shards`` (independent of every other concept)."""
    return int(stable_hash("shard", prompt, n=16), 16) % int(n_shards)


def concept_seeds(base_seed: int, images_per_concept: int) -> list[int]:
    """One fixed seed per image index."""
    return [int(base_seed) + i for i in range(int(images_per_concept))]


def model_key(spec: dict[str, Any], dtype: Any) -> str:
    """Key of a target model's activations: its spec (without batch size) and resolved dtype."""
    return stable_hash("model", activation_spec(spec),
                       str(dtype).replace("torch.", ""), local_file_fingerprints(spec))


def activation_rate(acts: np.ndarray, threshold: float) -> tuple[int, int, float]:
    """Pooled activations of one neuron on a concept's images -> (n_images, n_active, AR).
    Active means strictly above the neuron's probe threshold."""
    acts = np.asarray(acts, dtype=np.float64).ravel()
    n = int(acts.size)
    active = int(np.count_nonzero(acts > threshold))
    return n, active, (active / n if n else math.nan)


def filter_hypotheses(ar: np.ndarray, enabled: bool = True) -> tuple[np.ndarray, float, float]:
    """AR of every hypothesis -> (kept mask, initial mean AR, mean AR of those kept).

    Hypotheses whose AR is below the initial mean (over all hypotheses) are rejected, an AR equal to it is kept
    (compared exactly, not after float rounding); ``enabled=False`` (the
    "no Verify" ablation) keeps every hypothesis, and both means are still reported."""
    ar = np.asarray(ar, dtype=np.float64)
    if ar.size == 0:
        return np.zeros(0, dtype=bool), math.nan, math.nan
    if not np.isfinite(ar).all():
        raise VerifyError(f"{int(np.count_nonzero(~np.isfinite(ar)))} hypotheses have no finite AR")
    # Exact arithmetic on the ratios n_active / n_images the ARs are: a float mean of equal ARs can round above
    # them (7 x 0.35 -> 0.35000000000000003) and would reject hypotheses that are not below the mean. Each
    # distinct AR is read back as the nearest fraction with a denominator up to 10^6 (exact for any image count
    # up to that), so ties with the mean are ties.
    values, counts = np.unique(ar, return_counts=True)
    exact = [Fraction(float(v)).limit_denominator(1_000_000) for v in values]
    mean_exact = sum(f * int(c) for f, c in zip(exact, counts, strict=True)) / int(ar.size)
    keep_value = np.array([not enabled or f >= mean_exact for f in exact])
    kept = keep_value[np.searchsorted(values, ar)]
    n_kept = int(counts[keep_value].sum())
    kept_total = sum(f * int(c) for f, c, k in zip(exact, counts, keep_value, strict=True) if k)
    mean_initial = float(mean_exact)
    mean_kept = float(kept_total / n_kept) if n_kept else math.nan
    return kept, mean_initial, mean_kept


# ----------------------------------------------------------------------------------------------------------
# hypotheses and requests


def read_hypotheses(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All ``{neuron}.json`` of a hypotheses folder, by neuron, checked for the fields Verify needs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VerifyError(f"hypotheses folder does not exist: {folder}")
    files = [p for p in folder.glob("*.json") if not p.name.startswith(".")]
    out = []
    for p in files:
        try:
            h = read_json(p)
        except ValueError as exc:
            raise VerifyError(f"hypotheses file {p} is not valid JSON: {exc}") from exc
        if "neuron" not in h or not isinstance(h.get("clusters"), list):
            raise VerifyError(f"hypotheses file {p} lacks 'neuron' or a 'clusters' list")
        for c in h["clusters"]:
            for con in c.get("concepts", []):
                if not isinstance(con.get("text"), str) or not con["text"].strip():
                    raise VerifyError(f"hypotheses file {p}, neuron {h['neuron']}, cluster {c.get('cluster')}: "
                                      f"a concept has no text: {con!r}")
        out.append(h)
    return sorted(out, key=lambda h: int(h["neuron"]))


def iter_hypotheses(hyps: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Flatten to one row per (neuron, cluster, concept)."""
    for h in hyps:
        for c in h["clusters"]:
            for con in c.get("concepts", []):
                yield {"neuron": int(h["neuron"]), "cluster": c.get("cluster", 0), "concept": con["text"],
                       "concept_id": str(con.get("id", stable_hash(con["text"]))),
                       "rank": con.get("rank", ""), "score": con.get("score", "")}


def collect_requests(hypotheses_dirs: Sequence[str | os.PathLike[str]], template: str = "{}",
                     n_shards: int = 8) -> dict[str, Any]:
    """Every distinct prompt named by any hypothesis of any folder, with its shard."""
    concepts: dict[str, dict[str, Any]] = {}
    n_hyp = 0
    for d in hypotheses_dirs:
        for row in iter_hypotheses(read_hypotheses(d)):
            n_hyp += 1
            prompt = prompt_for(template, row["concept"])
            key = prompt_key(prompt)
            c = concepts.setdefault(key, {"key": key, "prompt": prompt, "shard": shard_of(prompt, n_shards),
                                          "texts": [], "ids": [], "n_hypotheses": 0})
            if row["concept"] not in c["texts"]:
                c["texts"].append(row["concept"])
            if row["concept_id"] not in c["ids"]:
                c["ids"].append(row["concept_id"])
            c["n_hypotheses"] += 1
    items = sorted(concepts.values(), key=lambda c: c["key"])
    per_shard = [0] * int(n_shards)
    for c in items:
        per_shard[c["shard"]] += 1
    return {"prompt_template": template, "shards": int(n_shards), "n_concepts": len(items), "n_hypotheses": n_hyp,
            "per_shard": per_shard, "sources": [str(d) for d in hypotheses_dirs], "concepts": items}


def run_requests(hypotheses_dirs: Sequence[str], out_path: str, template: str, n_shards: int,
                 generator_spec: dict[str, Any] | None = None) -> dict[str, Any]:
    if generator_spec is not None:
        from .backends.generators import check_generator_source

        check_generator_source(generator_spec)
    req = collect_requests(hypotheses_dirs, template, n_shards)
    write_json(out_path, req)
    log.info("generation requests: %d distinct prompts from %d hypotheses in %d folders; per shard %s",
             req["n_concepts"], req["n_hypotheses"], len(hypotheses_dirs), req["per_shard"])
    return req


# ----------------------------------------------------------------------------------------------------------
# the content-addressed cache


@dataclass
class CacheEntry:
    root: Path
    generator_key: str
    key: str

    @property
    def dir(self) -> Path:
        return Path(self.root) / self.generator_key / self.key[:2] / self.key

    def acts_path(self, mkey: str) -> Path:
        return self.dir / "acts" / f"{mkey}.npz"

    def thumb(self, seed: int) -> Path:
        return self.dir / "thumbs" / f"{seed}.jpg"

    def image(self, seed: int) -> Path:
        return self.dir / "images" / f"{seed}.png"

    def clean_partials(self) -> int:
        """Remove temporary files a killed job left behind (never a complete file). A job sharing the cache may be
        writing one of them right now: :func:`write_cache_file` then writes it again."""
        n = 0
        if self.dir.is_dir():
            for p in self.dir.rglob(".*.partial"):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    n += 1
        return n

    def read_acts(self, mkey: str) -> tuple[np.ndarray, np.ndarray] | None:
        path = self.acts_path(mkey)
        if not path.is_file():
            return None
        with np.load(path) as z:
            return z["seeds"].astype(np.int64), z["pooled"].astype(np.float32)

    def write_acts(self, mkey: str, rows: dict[int, np.ndarray]) -> None:
        """Merge ``rows`` (seed -> pooled [C]) into the stored activations, atomically."""
        old = self.read_acts(mkey)
        merged: dict[int, np.ndarray] = {}
        if old is not None:
            merged.update({int(s): v for s, v in zip(old[0], old[1], strict=True)})
        merged.update(rows)
        seeds = np.array(sorted(merged), dtype=np.int64)
        pooled = np.stack([merged[int(s)] for s in seeds]).astype(np.float32)
        path = self.acts_path(mkey)
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, seeds=seeds, pooled=pooled)

        write_cache_file(path, write)


def write_cache_file(path: Path, write: Callable[[Path], None], attempts: int = 3) -> None:
    """Write one cache file under a temporary name, then rename it. Shard jobs share the cache (the ablation
    variants' shards run beside the main ones) and each removes the temporary files it finds in the entries it
    starts on (:meth:`CacheEntry.clean_partials`): a temporary file removed under a running write is written
    again instead of failing the job."""
    for attempt in range(attempts):
        try:
            with atomic_path(path) as tmp:
                write(tmp)
            return
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
            log.warning("the temporary file of %s was removed by another job; writing it again", path)


def quantize(images: Any) -> Any:
    """[B, 3, H, W] float in [0, 1] -> the same images as 8-bit values would hold them."""
    return (images.clamp(0, 1) * 255).round() / 255


def _save_images(images: Any, paths: list[Path], kind: str, thumb_size: int) -> None:
    import torch.nn.functional as F
    from PIL import Image

    x = images
    if kind == "thumbnails" and max(x.shape[-2:]) > thumb_size:
        x = F.interpolate(x.float(), size=(thumb_size, thumb_size), mode="bilinear", antialias=True,
                          align_corners=False).clamp(0, 1)
    arr = (x * 255).round().to("cpu").byte().permute(0, 2, 3, 1).numpy()
    for a, path in zip(arr, paths, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(a)
        if kind == "thumbnails":
            write_cache_file(path, lambda tmp, img=img: img.save(tmp, format="JPEG", quality=90))
        else:
            write_cache_file(path, lambda tmp, img=img: img.save(tmp, format="PNG"))


def _load_images(paths: list[Path]) -> Any:
    import torch
    from PIL import Image

    arrs = []
    for p in paths:
        with Image.open(p) as img:
            arrs.append(np.asarray(img.convert("RGB")))
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255


# ----------------------------------------------------------------------------------------------------------
# one generation shard


@dataclass
class _Pending:
    concept: dict[str, Any]
    entry: CacheEntry
    remaining: int
    rows: dict[str, dict[int, np.ndarray]] = field(default_factory=lambda: defaultdict(dict))


def _batches(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def run_shard(
    requests: dict[str, Any],
    shard: int,
    generator_spec: dict[str, Any],
    model_specs: dict[str, dict[str, Any]],
    cache_root: str,
    manifest_path: str,
    device: str = "auto",
    progress: bool = False,
    load_generator_fn: Callable[..., Any] | None = None,
    load_model_fn: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Generate and measure what one shard lacks; write its manifest (see the module docstring)."""
    import torch

    from .backends.generators import generator_settings, load_generator
    from .backends.models import load_model
    from .devices import resolve_device, resolve_dtype

    load_generator_fn = load_generator_fn or load_generator
    load_model_fn = load_model_fn or load_model
    t_start = time.perf_counter()
    n_shards = int(generator_spec.get("shards", 1))
    if int(requests.get("shards", n_shards)) != n_shards:
        raise VerifyError(f"requests.json was split into {requests.get('shards')} shards but generator.shards is "
                          f"{n_shards}; rerun generation_requests")
    if not 0 <= int(shard) < n_shards:
        raise VerifyError(f"shard {shard} is out of range for generator.shards = {n_shards}")
    dev = resolve_device(device)
    gdtype = resolve_dtype(generator_spec.get("dtype", "auto"), dev)
    settings = generator_settings(generator_spec, gdtype)
    gkey = stable_hash("generator", settings)
    mdtypes = {name: resolve_dtype(spec.get("dtype", "auto"), dev) for name, spec in model_specs.items()}
    mkeys = {name: model_key(spec, mdtypes[name]) for name, spec in model_specs.items()}
    seeds = concept_seeds(generator_spec.get("seed", 0), generator_spec.get("images_per_concept", 20))
    keep = generator_spec.get("keep_images", "thumbnails")
    thumb_size = int(generator_spec.get("thumbnail_size", 128))
    batch_size = int(generator_spec.get("batch_size", 16))
    root = Path(cache_root)

    concepts = [c for c in requests["concepts"] if int(c["shard"]) == int(shard)]
    gen_items: list[tuple[int, int]] = []   # (concept index, seed) to generate
    file_items: list[tuple[int, int]] = []  # (concept index, seed) to measure from a kept full image
    pending: dict[int, _Pending] = {}
    n_cleaned = 0
    for ci, c in enumerate(concepts):
        entry = CacheEntry(root, gkey, c["key"])
        n_cleaned += entry.clean_partials()
        have = {}
        for mk in set(mkeys.values()):
            got = entry.read_acts(mk)
            have[mk] = set() if got is None else {int(s) for s in got[0]}
        need_acts = [s for s in seeds if any(s not in h for h in have.values())]
        need_img = [s for s in seeds
                    if (keep == "thumbnails" and not entry.thumb(s).is_file())
                    or (keep == "full" and not entry.image(s).is_file())]
        gen = sorted(set(need_img) | {s for s in need_acts if not entry.image(s).is_file()})
        from_files = [s for s in need_acts if s not in gen]
        gen_items += [(ci, s) for s in gen]
        file_items += [(ci, s) for s in from_files]
        if gen or from_files:
            pending[ci] = _Pending(c, entry, len(gen) + len(from_files))
    if n_cleaned:
        log.warning("shard %d: removed %d temporary files left by a killed job", shard, n_cleaned)
    log.info("shard %d: %d concepts, %d images to generate, %d to measure from kept images, %d cached", shard,
             len(concepts), len(gen_items), len(file_items),
             len(concepts) * len(seeds) - len(gen_items) - len(file_items))

    models: dict[str, Any] = {}
    if gen_items or file_items:
        for name, spec in model_specs.items():
            models[name] = load_model_fn(name, spec, dev, mdtypes[name])
    generator = None
    t_gen = 0.0

    def measure(images: Any, batch: list[tuple[int, int]]) -> None:
        for name, lm in models.items():
            mb = int(model_specs[name].get("batch_size", 64))
            outs = []
            for i in range(0, images.shape[0], mb):
                x = lm.preprocess.from_batch(images[i : i + mb].to(lm.device, torch.float32))
                pooled, _ = lm.activations(x, maps=False)
                outs.append(pooled.float().cpu().numpy())
            pooled_all = np.concatenate(outs)
            for (ci, s), row in zip(batch, pooled_all, strict=True):
                pending[ci].rows[mkeys[name]][s] = row
        for ci, _s in batch:
            pending[ci].remaining -= 1
            if pending[ci].remaining == 0:
                p = pending.pop(ci)
                text = dumps({"prompt": p.concept["prompt"], "generator": settings}) + "\n"
                write_cache_file(p.entry.dir / "prompt.json", lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
                for mk, rows in p.rows.items():  # acts last: the completion marker
                    p.entry.write_acts(mk, rows)

    from tqdm import tqdm

    bar = tqdm(total=len(gen_items) + len(file_items), desc=f"shard {shard}", unit="img", disable=not progress,
               mininterval=10.0)
    for batch in _batches(file_items, batch_size):
        images = _load_images([pending[ci].entry.image(s) for ci, s in batch])
        measure(images, batch)
        bar.update(len(batch))
    if gen_items:
        generator = load_generator_fn(generator_spec, dev, gdtype)
        for batch in _batches(gen_items, batch_size):
            prompts = [concepts[ci]["prompt"] for ci, _ in batch]
            t0 = time.perf_counter()
            images = generator.generate(prompts, [s for _, s in batch])
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t_gen += time.perf_counter() - t0
            if images.dim() != 4 or images.shape[0] != len(batch) or images.shape[1] != 3:
                raise VerifyError(f"generator {settings.get('model', settings.get('factory'))!r} returned a tensor "
                                  f"of shape {tuple(images.shape)} for {len(batch)} prompts; expected [B, 3, H, W]")
            images = quantize(images.float())
            if keep in ("thumbnails", "full"):
                paths = [pending[ci].entry.thumb(s) if keep == "thumbnails" else pending[ci].entry.image(s)
                         for ci, s in batch]
                _save_images(images, paths, keep, thumb_size)
            measure(images, batch)
            bar.update(len(batch))
    bar.close()
    if pending:  # cannot happen: every item decrements its concept
        raise RuntimeError(f"shard {shard}: {len(pending)} concepts were not completed")

    manifest_concepts = []
    for c in concepts:
        entry = CacheEntry(root, gkey, c["key"])
        manifest_concepts.append({
            "key": c["key"], "prompt": c["prompt"], "texts": c["texts"], "ids": c["ids"], "entry": str(entry.dir),
            "seeds": seeds,
            "acts": {name: str(entry.acts_path(mk)) for name, mk in mkeys.items()},
            "thumbs": [str(entry.thumb(s)) for s in seeds if entry.thumb(s).is_file()],
            "images": [str(entry.image(s)) for s in seeds if entry.image(s).is_file()],
        })
    n_gen = len(gen_items)
    manifest = {
        "shard": int(shard),
        "shards": n_shards,
        "generator": settings,
        "generator_key": gkey,
        "models": {name: {"key": mkeys[name], "dtype": str(mdtypes[name]).replace("torch.", "")} for name in mkeys},
        "seeds": seeds,
        "keep_images": keep,
        "n_concepts": len(concepts),
        "n_generated": n_gen,
        "n_measured_from_images": len(file_items),
        "n_cached": len(concepts) * len(seeds) - n_gen - len(file_items),
        "generate_seconds": round(t_gen, 3),
        "images_per_second": round(n_gen / t_gen, 3) if t_gen > 0 else None,
        "seconds": round(time.perf_counter() - t_start, 3),
        "device": str(dev),
        "concepts": manifest_concepts,
    }
    write_json(manifest_path, manifest)
    log.info("shard %d done: generated %d images (%s img/s), measured %d from kept images, reused %d", shard, n_gen,
             manifest["images_per_second"], len(file_items), manifest["n_cached"])
    return manifest


# ----------------------------------------------------------------------------------------------------------
# Activation Rate, filtering, neuron_concepts.csv


def index_manifests(manifest_paths: Sequence[str | os.PathLike[str]]) -> dict[str, dict[str, Any]]:
    """concept text -> its manifest record (with the manifest's seeds)."""
    by_text: dict[str, dict[str, Any]] = {}
    for mp in manifest_paths:
        m = read_json(mp)
        for c in m["concepts"]:
            rec = {**c, "manifest": str(mp), "models": m["models"]}
            for t in c["texts"]:
                by_text[t] = rec
    return by_text


def compute_ar(hyps: list[dict[str, Any]], select_summary: dict[str, Any], by_text: dict[str, dict[str, Any]],
               model: str, hypotheses_dir: str = "") -> list[dict[str, Any]]:
    """One row per (neuron, cluster, concept) hypothesis with n_images, n_active, ar."""
    neurons = select_summary["neurons"]
    n_neurons = int(select_summary.get("n_neurons", len(neurons)))
    acts_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    rows = []
    for r in iter_hypotheses(hyps):
        n = r["neuron"]
        if str(n) not in neurons:
            raise VerifyError(f"{hypotheses_dir}: neuron {n} is not a neuron of the layer ({n_neurons} neurons in "
                              "select/summary.json)")
        rec = by_text.get(r["concept"])
        if rec is None:
            raise VerifyError(f"{hypotheses_dir}: concept {r['concept']!r} (id {r['concept_id']}) of neuron {n} is in "
                              "no generation manifest; rerun generation_requests and generate_shard")
        if model not in rec["acts"]:
            raise VerifyError(f"generation manifest {rec['manifest']} has no activations of model {model!r} "
                              f"(models: {', '.join(rec['acts'])}); rerun generate_shard")
        path = rec["acts"][model]
        if path not in acts_cache:
            if not os.path.isfile(path):
                raise VerifyError(f"activations {path} of concept {r['concept']!r} for model {model!r} are missing "
                                  f"from the cache; rerun generate_shard")
            with np.load(path) as z:
                acts_cache[path] = (z["seeds"], z["pooled"])
        seeds, pooled = acts_cache[path]
        want = np.asarray(rec["seeds"], dtype=np.int64)
        pos = {int(s): i for i, s in enumerate(seeds)}
        missing = [int(s) for s in want if int(s) not in pos]
        if missing:
            raise VerifyError(f"activations {path} of concept {r['concept']!r} lack seeds {missing[:5]}; "
                              "rerun generate_shard")
        if pooled.shape[1] != n_neurons:
            raise VerifyError(f"activations {path} have {pooled.shape[1]} neurons but model {model!r} has {n_neurons} "
                              "in select/summary.json; rerun generate_shard")
        vals = pooled[[pos[int(s)] for s in want], n]
        n_img, n_act, ar = activation_rate(vals, float(neurons[str(n)]["threshold"]))
        rows.append({**r, "n_images": n_img, "n_active": n_act, "ar": ar})
    return rows


def neuron_table(select_summary: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per neuron of the layer: verified (kept concepts, best AR first), unverified, or not selected."""
    import json

    by_neuron: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_neuron[r["neuron"]].append(r)
    out = []
    for key in sorted(select_summary["neurons"], key=int):
        info = select_summary["neurons"][key]
        n = int(key)
        hyps = by_neuron.get(n, [])
        best: dict[str, dict[str, Any]] = {}
        for r in hyps:  # a concept named by two clusters counts once, with its AR
            if r["kept"] and (r["concept"] not in best or r["ar"] > best[r["concept"]]["ar"]):
                best[r["concept"]] = r
        kept = sorted(best.values(), key=lambda r: (-r["ar"], r["concept"]))
        if not info.get("selected"):
            status = "dead" if info.get("dead") else "not_selected"
        else:
            status = "verified" if kept else "unverified"
        out.append({
            "neuron": n, "status": status, "n_hypotheses": len(hyps), "n_verified": len(kept),
            "best_concept": kept[0]["concept"] if kept else "", "best_ar": kept[0]["ar"] if kept else "",
            "concepts": json.dumps([r["concept"] for r in kept], ensure_ascii=False),
            "ars": json.dumps([round(r["ar"], 6) for r in kept]),
            "concept_ids": json.dumps([r["concept_id"] for r in kept]),
            "ratio": info.get("ratio"), "threshold": info.get("threshold"),
        })
    return out


def run_activation_rate(
    hypotheses_dir: str,
    select_summary_path: str,
    manifest_paths: Sequence[str],
    model: str,
    out_ar: str,
    out_summary: str,
    out_neuron_concepts: str,
    out_generated: str | None = None,
    enabled: bool = True,
    method: str = "sieve",
) -> dict[str, Any]:
    """AR of every hypothesis of one folder, the filter, and the per-neuron table (callable for baselines)."""
    summary_sel = read_json(select_summary_path)
    hyps = read_hypotheses(hypotheses_dir)
    by_text = index_manifests(manifest_paths)
    rows = compute_ar(hyps, summary_sel, by_text, model, hypotheses_dir)
    kept, mean_initial, mean_kept = filter_hypotheses(np.array([r["ar"] for r in rows]), enabled)
    for r, k in zip(rows, kept, strict=True):
        r["kept"] = int(k)
    table = neuron_table(summary_sel, rows)
    n_selected = sum(1 for v in summary_sel["neurons"].values() if v.get("selected"))
    n_verified = sum(1 for t in table if t["status"] == "verified")
    seeds = next(iter(by_text.values()))["seeds"] if by_text else []
    summary = {
        "method": method,
        "model": model,
        "verify_enabled": bool(enabled),
        "n_hypotheses": len(rows),
        "mean_ar_initial": mean_initial,
        "n_kept": int(kept.sum()),
        "mean_ar_kept": mean_kept,
        "n_selected": n_selected,
        "n_verified": n_verified,
        "n_unverified": n_selected - n_verified,
        "n_neurons": len(table),
        "images_per_concept": len(seeds),
        "n_concepts": len({r["concept"] for r in rows}),
    }
    write_csv(out_ar, AR_COLUMNS, rows)
    write_csv(out_neuron_concepts, NEURON_COLUMNS, table)
    if out_generated:
        gen = {}
        for r in rows:
            rec = by_text[r["concept"]]
            gen[r["concept_id"]] = {"text": r["concept"], "prompt": rec["prompt"], "entry": rec["entry"],
                                    "seeds": rec["seeds"], "thumbs": rec["thumbs"], "images": rec["images"]}
        write_json(out_generated, gen)
    write_json(out_summary, summary)
    log.info("verify %s (%s): %d hypotheses, mean AR %.3f initial, %d kept (mean AR %.3f); %d of %d selected "
             "neurons verified", model, method, len(rows), mean_initial, summary["n_kept"], mean_kept, n_verified,
             n_selected)
    return summary
