"""Step 2 of Verify: one generation shard, in named phases (diffusers-style), each reachable on its own.

:func:`run_shard` reads as its phases:

1. :func:`check_shard`        the requests were split for this shard count, the shard exists;
2. :func:`resolve_settings`   device, dtypes, the generator's and the models' cache keys, seeds (needs torch);
3. :func:`shard_concepts`     the shard's concepts, and their cache entries (leftover temporary files removed,
                              checksums recorded for files of an older cache that have none);
4. :func:`plan_shard`         PURE: what to generate, what to measure from kept full images, what is cached;
                              it reads only the cache, never torch, a model or a generator;
5. :func:`measure_stored`     the planned images already on disk, through every model;
6. :func:`generate_and_measure`  the rest: generate in batches, quantise, keep thumbnails or full images, measure;
7. :func:`shard_manifest`     the manifest ``results/generate/shards/{shard}.json`` (written last).

A concept's activations are written once all its planned images are measured (:class:`ShardRecorder`), acts
last, so a killed job loses at most the concepts in flight. The writes run on a :class:`ShardWriter` thread, beside
generation and at most one batch behind it: a kill also loses the last batch's writes. A cache file that does not match its recorded
checksum is planned as missing, so the job regenerates it (and logs its path). The job also records the keys it
resolved (:func:`resolution_record`), which the CPU generation plan (:mod:`.plan`) reads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import with_defaults
from ..io import dumps, read_json, stable_hash, write_json
from . import VerifyError
from .cache import (
    CacheEntry,
    adopt_checksums,
    image_bytes,
    load_images,
    model_key,
    quantize,
    usable,
    write_cache_file,
    write_images,
)
from .requests import concept_seeds

log = logging.getLogger(__name__)

Item = tuple[int, int]  # (concept index within the shard, seed)


# ----------------------------------------------------------------------------------------------------------
# 1-3. inputs and settings


def check_shard(requests: dict[str, Any], shard: int, n_shards: int) -> None:
    """The requests were split into ``n_shards`` (``generator.shards``) and ``shard`` is one of them."""
    if int(requests.get("shards", n_shards)) != n_shards:
        raise VerifyError(
            f"requests.json was split into {requests.get('shards')} shards but generator.shards is "
            f"{n_shards}; rerun generation_requests"
        )
    if not 0 <= int(shard) < n_shards:
        raise VerifyError(f"shard {shard} is out of range for generator.shards = {n_shards}")


@dataclass(frozen=True)
class ShardSettings:
    """What a shard job resolves once from the config: the device, dtypes and the cache keys they give."""

    device: Any
    generator_dtype: Any
    generator: dict[
        str, Any
    ]  # the settings that change pixels (:func:`~sieve.backends.generators.generator_settings`)
    generator_key: str
    model_dtypes: dict[str, Any]
    model_keys: dict[str, str]
    seeds: list[int]
    keep: str
    thumbnail_size: int
    batch_size: int


def resolve_settings(
    generator_spec: dict[str, Any], model_specs: dict[str, dict[str, Any]], device: str
) -> ShardSettings:
    """Resolve ``device`` and the dtypes (``auto`` depends on the device), and the keys of the cache. Keys the
    specs leave out take the schema's defaults; the cache keys hash the specs as given."""
    from ..backends.generators import generator_settings
    from ..devices import resolve_device, resolve_dtype

    gen = with_defaults(generator_spec, "generator")
    dev = resolve_device(device)
    gdtype = resolve_dtype(gen["dtype"], dev)
    settings = generator_settings(generator_spec, gdtype)
    mdtypes = {
        name: resolve_dtype(with_defaults(spec, "models.*")["dtype"], dev)
        for name, spec in model_specs.items()
    }
    return ShardSettings(
        device=dev,
        generator_dtype=gdtype,
        generator=settings,
        generator_key=stable_hash("generator", settings),
        model_dtypes=mdtypes,
        model_keys={name: model_key(spec, mdtypes[name]) for name, spec in model_specs.items()},
        seeds=concept_seeds(gen["seed"], gen["images_per_concept"]),
        keep=gen["keep_images"],
        thumbnail_size=int(gen["thumbnail_size"]),
        batch_size=int(gen["batch_size"]),
    )


# The resolution record: the keys a shard job resolved (its device decides an ``auto`` dtype), kept in the cache
# as ``cache/resolved/{resolution_key}.json`` so that a CPU job (the generation plan, the parse-time audit) can
# find the entries the GPU jobs use without a GPU.
RESOLVED_DIR = "resolved"


def resolution_key(
    generator_spec: dict[str, Any], model_specs: dict[str, dict[str, Any]], device: str
) -> str:
    """Key of the settings as requested (dtypes as written, ``auto`` included; local files by content): equal
    requests resolve to equal keys on equal devices. Needs no torch."""
    from ..backends.generators import generator_settings

    gen = with_defaults(generator_spec, "generator")
    models = {
        name: model_key(spec, with_defaults(spec, "models.*")["dtype"]) for name, spec in model_specs.items()
    }
    return stable_hash("resolution", generator_settings(generator_spec, str(gen["dtype"])), models, device)


def resolution_path(cache_root: str | Path, key: str) -> Path:
    return Path(cache_root) / RESOLVED_DIR / f"{key}.json"


def resolution_record(settings: ShardSettings) -> dict[str, Any]:
    """What a shard job resolved: the keys of its cache entries, the dtypes and the device."""
    return {
        "generator": settings.generator,
        "generator_key": settings.generator_key,
        "models": {
            name: {
                "key": settings.model_keys[name],
                "dtype": str(settings.model_dtypes[name]).replace("torch.", ""),
            }
            for name in settings.model_keys
        },
        "device": str(settings.device),
    }


def read_resolution(cache_root: str | Path, key: str) -> dict[str, Any] | None:
    """The resolution record of ``key``, or None (no job of these settings has run, or the cache was removed)."""
    path = resolution_path(cache_root, key)
    try:
        return read_json(path)
    except FileNotFoundError:
        return None
    except ValueError:
        log.warning("resolution record %s is not valid JSON: ignored", path)
        return None


def settings_from_record(record: dict[str, Any], generator_spec: dict[str, Any]) -> ShardSettings:
    """The settings a shard job with this resolution record would use (strings for device and dtypes)."""
    gen = with_defaults(generator_spec, "generator")
    return ShardSettings(
        device=record["device"],
        generator_dtype=record["generator"].get("dtype"),
        generator=record["generator"],
        generator_key=record["generator_key"],
        model_dtypes={n: m["dtype"] for n, m in record["models"].items()},
        model_keys={n: m["key"] for n, m in record["models"].items()},
        seeds=concept_seeds(gen["seed"], gen["images_per_concept"]),
        keep=gen["keep_images"],
        thumbnail_size=int(gen["thumbnail_size"]),
        batch_size=int(gen["batch_size"]),
    )


def shard_concepts(requests: dict[str, Any], shard: int) -> list[dict[str, Any]]:
    """The concepts of ``requests.json`` that fall into ``shard``, in request order."""
    return [c for c in requests["concepts"] if int(c["shard"]) == int(shard)]


def clean_entries(entries: Sequence[CacheEntry], shard: int) -> int:
    """Remove the temporary files a killed job left in these entries (see :meth:`CacheEntry.clean_partials`)."""
    n = sum(entry.clean_partials() for entry in entries)
    if n:
        log.warning("shard %d: removed %d temporary files left by a killed job", shard, n)
    return n


# ----------------------------------------------------------------------------------------------------------
# 4. the plan (pure: the cache in, decisions out)


@dataclass(frozen=True)
class ShardPlan:
    """``generate``: (concept, seed) pairs to generate; ``from_images``: pairs whose kept full image only needs
    measuring (a model was added); everything else of ``n_concepts x n_seeds`` is cached."""

    generate: tuple[Item, ...]
    from_images: tuple[Item, ...]
    n_concepts: int
    n_seeds: int

    @property
    def n_cached(self) -> int:
        return self.n_concepts * self.n_seeds - len(self.generate) - len(self.from_images)

    @property
    def empty(self) -> bool:
        return not self.generate and not self.from_images

    def items_per_concept(self) -> dict[int, int]:
        """concept index -> number of planned items (a concept is complete when all are measured)."""
        counts: dict[int, int] = defaultdict(int)
        for ci, _ in (*self.from_images, *self.generate):
            counts[ci] += 1
        return dict(counts)


def plan_concept(
    entry: CacheEntry, seeds: Sequence[int], keep: str, model_keys: Iterable[str]
) -> tuple[list[int], list[int]]:
    """-> (seeds to generate, seeds to measure from kept full images) of one concept.

    A seed is generated when the image ``keep_images`` asks for is missing, or when a model lacks its activation
    and no full image is kept; it is measured from its full image when only a model's activation is missing.
    A file that does not match its recorded checksum counts as missing (:func:`~.cache.usable`)."""
    model_keys = set(model_keys)
    if not entry.dir.is_dir() and (keep in ("thumbnails", "full") or model_keys):
        return sorted(set(seeds)), []  # a new concept: every seed lacks its image or activations
    have = {}
    for mk in model_keys:
        got = entry.read_acts(mk)
        have[mk] = set() if got is None else {int(s) for s in got[0]}
    need_acts = [s for s in seeds if any(s not in h for h in have.values())]
    need_img = [
        s
        for s in seeds
        if (keep == "thumbnails" and not usable(entry.thumb(s)))
        or (keep == "full" and not usable(entry.image(s)))
    ]
    gen = sorted(set(need_img) | {s for s in need_acts if not usable(entry.image(s))})
    return gen, [s for s in need_acts if s not in gen]


def plan_shard(
    entries: Sequence[CacheEntry], seeds: Sequence[int], keep: str, model_keys: Iterable[str]
) -> ShardPlan:
    """What the shard has to do, concept by concept in order (see :func:`plan_concept`). Needs no torch."""
    model_keys = list(model_keys)
    generate: list[Item] = []
    from_images: list[Item] = []
    for ci, entry in enumerate(entries):
        gen, stored = plan_concept(entry, seeds, keep, model_keys)
        generate += [(ci, s) for s in gen]
        from_images += [(ci, s) for s in stored]
    return ShardPlan(tuple(generate), tuple(from_images), len(entries), len(seeds))


# ----------------------------------------------------------------------------------------------------------
# 5-6. measuring and generating


class ShardWriter:
    """A writer thread with a bounded queue: the shard's file writes (thumbnails and full images encoded, each
    finished concept's ``prompt.json`` and activations) run beside generation instead of between its batches.

    One thread, first in first out, so a concept's images are written before its activations (the completion
    marker) exactly as before. At most ``max_pending`` tasks wait: a generator faster than the disk waits for
    the writer instead of holding every batch in memory. The first error a write raises is raised again in the
    shard's thread by the next :meth:`submit` or by :meth:`close`; later writes are skipped."""

    def __init__(self, max_pending: int = 4) -> None:
        self._queue: queue.Queue[tuple[Callable[..., None], tuple[Any, ...], bool] | None] = queue.Queue(
            maxsize=max_pending
        )
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="shard-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (task := self._queue.get()) is not None:
            fn, args, always = task
            if self._error is None or always:  # after an error, only marks run (no waiter hangs)
                try:
                    fn(*args)
                except BaseException as exc:  # noqa: BLE001 - handed to the shard's thread
                    self._error = exc

    def check(self) -> None:
        """Raise the first error a write raised."""
        if self._error is not None:
            raise self._error

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Queue ``fn(*args)`` (waits while ``max_pending`` tasks are queued)."""
        self.check()
        self._queue.put((fn, args, False))

    def mark(self) -> threading.Event:
        """An event set once every write queued before it is done."""
        done = threading.Event()
        self._queue.put((done.set, (), True))
        return done

    def close(self) -> None:
        """Finish every queued write, stop the thread, raise the first error a write raised."""
        self._queue.put(None)
        self._thread.join()
        self.check()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        # the shard failed: finish what was queued (complete files only), keep the shard's own error
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            log.warning("a cache write also failed: %s", self._error)


@dataclass
class _Pending:
    entry: CacheEntry
    prompt: str
    remaining: int
    rows: dict[str, dict[int, np.ndarray]] = field(default_factory=lambda: defaultdict(dict))


class ShardRecorder:
    """Collects each concept's activation rows and writes its cache entry (``prompt.json``, then the acts, the
    completion marker) once every planned image of it is measured."""

    def __init__(
        self,
        concepts: Sequence[dict[str, Any]],
        entries: Sequence[CacheEntry],
        plan: ShardPlan,
        generator_settings: dict[str, Any],
        writer: ShardWriter | None = None,
    ) -> None:
        """``writer``: where the writes run (none: at once, in this thread)."""
        self.settings = generator_settings
        self.writer = writer
        self.pending = {
            ci: _Pending(entries[ci], concepts[ci]["prompt"], n) for ci, n in plan.items_per_concept().items()
        }

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run a write: on the writer thread, or at once."""
        if self.writer is None:
            fn(*args)
        else:
            self.writer.submit(fn, *args)

    def check(self) -> None:
        """Raise the first error a write on the writer thread raised."""
        if self.writer is not None:
            self.writer.check()

    def mark(self) -> threading.Event:
        """An event set once every write submitted so far is done."""
        if self.writer is not None:
            return self.writer.mark()
        done = threading.Event()
        done.set()
        return done

    def entry(self, ci: int) -> CacheEntry:
        return self.pending[ci].entry

    def add(self, batch: Sequence[Item], pooled: dict[str, np.ndarray]) -> None:
        """``pooled``: model key -> [len(batch), C] activations of the batch's images."""
        for mk, rows in pooled.items():
            for (ci, s), row in zip(batch, rows, strict=True):
                self.pending[ci].rows[mk][s] = row
        for ci, _s in batch:
            self.pending[ci].remaining -= 1
            if self.pending[ci].remaining == 0:
                self.submit(self._finish, self.pending.pop(ci))

    def _finish(self, p: _Pending) -> None:
        text = dumps({"prompt": p.prompt, "generator": self.settings}) + "\n"
        write_cache_file(p.entry.dir / "prompt.json", text.encode("utf-8"))
        for mk, rows in p.rows.items():  # acts last: the completion marker
            p.entry.write_acts(mk, rows)


def measure_images(
    images: Any, models: dict[str, Any], model_specs: dict[str, dict[str, Any]], model_keys: dict[str, str]
) -> dict[str, np.ndarray]:
    """[B, 3, H, W] images in [0, 1] -> model key -> pooled activations [B, C], each model in its own batches."""
    import torch

    out = {}
    for name, lm in models.items():
        mb = int(with_defaults(model_specs[name], "models.*")["batch_size"])
        parts = []
        for i in range(0, images.shape[0], mb):
            x = lm.preprocess.from_batch(images[i : i + mb].to(lm.device, torch.float32))
            pooled, _ = lm.activations(x, maps=False)
            parts.append(pooled.float().cpu().numpy())
        out[model_keys[name]] = np.concatenate(parts)
    return out


def host_copy(x: Any) -> np.ndarray:
    """A (device) tensor as a host array, copied now: the writer thread never touches the device."""
    return x.cpu().numpy()


def batches(items: Sequence[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def measure_stored(
    plan: ShardPlan,
    recorder: ShardRecorder,
    measure: Callable[[Any], dict[str, np.ndarray]],
    batch_size: int,
    progress: Any,
) -> None:
    """Phase 5: the kept full images of :attr:`ShardPlan.from_images`, through every model."""
    for batch in batches(plan.from_images, batch_size):
        images = load_images([recorder.entry(ci).image(s) for ci, s in batch])
        recorder.add(batch, measure(images))
        progress.update(len(batch))


def generate_and_measure(
    plan: ShardPlan,
    concepts: Sequence[dict[str, Any]],
    recorder: ShardRecorder,
    generator: Any,
    measure: Callable[[Any], dict[str, np.ndarray]],
    settings: ShardSettings,
    progress: Any,
) -> float:
    """Phase 6: generate :attr:`ShardPlan.generate` in batches, quantise to 8 bits, keep thumbnails or full
    images, measure. Returns the seconds spent generating. The images are encoded and written through the
    recorder (on a :class:`ShardWriter`, while the next batch generates); a batch's writes are done before the
    batch after next starts generating, so the writer is never more than one batch behind."""
    import torch

    t_gen = 0.0
    written: list[Any] = []  # per batch: the event set when its writes are done
    for batch in batches(plan.generate, settings.batch_size):
        if len(written) >= 2:
            written[-2].wait()
            recorder.check()
        t0 = time.perf_counter()
        images = generator.generate([concepts[ci]["prompt"] for ci, _ in batch], [s for _, s in batch])
        if settings.device.type == "cuda":
            torch.cuda.synchronize()
        t_gen += time.perf_counter() - t0
        if images.dim() != 4 or images.shape[0] != len(batch) or images.shape[1] != 3:
            g = settings.generator
            raise VerifyError(
                f"generator {g.get('model', g.get('factory'))!r} returned a tensor of shape "
                f"{tuple(images.shape)} for {len(batch)} prompts; expected [B, 3, H, W]"
            )
        images = quantize(images.float())
        if settings.keep in ("thumbnails", "full"):
            paths = [
                recorder.entry(ci).thumb(s) if settings.keep == "thumbnails" else recorder.entry(ci).image(s)
                for ci, s in batch
            ]
            recorder.submit(
                write_images,
                host_copy(image_bytes(images, settings.keep, settings.thumbnail_size)),
                paths,
                settings.keep,
            )
        recorder.add(batch, measure(images))
        written.append(recorder.mark())
        progress.update(len(batch))
    return t_gen


# ----------------------------------------------------------------------------------------------------------
# 7. the manifest


def shard_manifest(
    shard: int,
    n_shards: int,
    concepts: Sequence[dict[str, Any]],
    entries: Sequence[CacheEntry],
    settings: ShardSettings,
    plan: ShardPlan,
    t_gen: float,
    seconds: float,
) -> dict[str, Any]:
    """The shard's manifest: every concept's cache entry, activations and kept images, and what the job did."""
    seeds, mkeys = settings.seeds, settings.model_keys
    manifest_concepts = [
        {
            "key": c["key"],
            "prompt": c["prompt"],
            "texts": c["texts"],
            "ids": c["ids"],
            "entry": str(entry.dir),
            "seeds": seeds,
            "acts": {name: str(entry.acts_path(mk)) for name, mk in mkeys.items()},
            "thumbs": [str(p) for p in map(entry.thumb, seeds) if p.is_file()],
            "images": [str(p) for p in map(entry.image, seeds) if p.is_file()],
        }
        for c, entry in zip(concepts, entries, strict=True)
    ]
    n_gen = len(plan.generate)
    return {
        "shard": int(shard),
        "shards": n_shards,
        "generator": settings.generator,
        "generator_key": settings.generator_key,
        "models": {
            name: {"key": mkeys[name], "dtype": str(settings.model_dtypes[name]).replace("torch.", "")}
            for name in mkeys
        },
        "seeds": seeds,
        "keep_images": settings.keep,
        "n_concepts": len(concepts),
        "n_generated": n_gen,
        "n_measured_from_images": len(plan.from_images),
        "n_cached": plan.n_cached,
        "generate_seconds": round(t_gen, 3),
        "images_per_second": round(n_gen / t_gen, 3) if t_gen > 0 else None,
        "seconds": round(seconds, 3),
        "device": str(settings.device),
        "concepts": manifest_concepts,
    }


# ----------------------------------------------------------------------------------------------------------
# the runner


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
    together: Sequence[int] = (),
) -> dict[str, Any]:
    """Generate and measure what one shard lacks; write its manifest (the phases of the module docstring).

    ``generator_spec`` and ``model_specs`` are the config sections (keys left out take the schema's defaults).
    ``together``: other shards whose concepts this job generates too, with the same pipeline and models
    (``generator.shards_per_job``); the manifest lists this shard's concepts, and its counts, generate time and
    rate are the job's (``job_shards`` names the shards), so that summing manifests counts every image once."""
    from tqdm import tqdm

    from ..backends.generators import load_generator
    from ..backends.models import load_model

    t_start = time.perf_counter()
    n_shards = int(with_defaults(generator_spec, "generator")["shards"])
    check_shard(requests, shard, n_shards)
    for other in together:
        check_shard(requests, other, n_shards)
    settings = resolve_settings(generator_spec, model_specs, device)
    concepts = shard_concepts(requests, shard)
    n_own = len(concepts)
    concepts = concepts + [c for other in together for c in shard_concepts(requests, other)]
    write_json(
        resolution_path(cache_root, resolution_key(generator_spec, model_specs, device)),
        resolution_record(settings),
    )
    entries = [CacheEntry(Path(cache_root), settings.generator_key, c["key"]) for c in concepts]
    clean_entries(entries, shard)
    adopt_checksums(
        f for e in entries if e.dir.is_dir() for f in e.files(settings.model_keys.values(), settings.seeds)
    )
    plan = plan_shard(entries, settings.seeds, settings.keep, settings.model_keys.values())
    log.info(
        "shard %d: %d concepts, %d images to generate, %d to measure from kept images, %d cached",
        shard,
        len(concepts),
        len(plan.generate),
        len(plan.from_images),
        plan.n_cached,
    )

    t_gen = 0.0
    if not plan.empty:
        load_model_fn = load_model_fn or load_model
        models = {
            name: load_model_fn(name, spec, settings.device, settings.model_dtypes[name])
            for name, spec in model_specs.items()
        }

        def measure(images: Any) -> dict[str, np.ndarray]:
            return measure_images(images, models, model_specs, settings.model_keys)

        bar = tqdm(
            total=len(plan.generate) + len(plan.from_images),
            desc=f"shard {shard}",
            unit="img",
            disable=not progress,
            mininterval=10.0,
        )
        with ShardWriter() as writer:
            recorder = ShardRecorder(concepts, entries, plan, settings.generator, writer)
            measure_stored(plan, recorder, measure, settings.batch_size, bar)
            if plan.generate:
                t_load = time.perf_counter()
                generator = (load_generator_fn or load_generator)(
                    generator_spec, settings.device, settings.generator_dtype
                )
                log.info(
                    "shard %d: loaded the generator (%.1f s) for shards %s",
                    shard,
                    time.perf_counter() - t_load,
                    [shard, *together],
                )
                t_gen = generate_and_measure(plan, concepts, recorder, generator, measure, settings, bar)
        bar.close()
        if recorder.pending:  # cannot happen: every item decrements its concept
            raise RuntimeError(f"shard {shard}: {len(recorder.pending)} concepts were not completed")

    manifest = shard_manifest(
        shard,
        n_shards,
        concepts[:n_own],
        entries[:n_own],
        settings,
        plan,
        t_gen,
        time.perf_counter() - t_start,
    )
    if together:  # this shard's own cached images, as planned
        planned = sum(ci < n_own for ci, _ in (*plan.generate, *plan.from_images))
        manifest["n_cached"] = n_own * len(settings.seeds) - planned
        manifest["job_shards"] = [int(shard), *map(int, together)]
    write_json(manifest_path, manifest)
    log.info(
        "shard %d done: generated %d images (%s img/s), measured %d from kept images, reused %d",
        shard,
        manifest["n_generated"],
        manifest["images_per_second"],
        manifest["n_measured_from_images"],
        manifest["n_cached"],
    )
    return manifest
