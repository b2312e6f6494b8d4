"""A realistic fake ``results/`` tree for the report tests, written through the real Select code and the
file contracts of the later stages (clusters, grids, hypotheses, ar.csv, verify summary, truth, baseline,
generated thumbnails, benchmarks)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sieve.io import stable_hash, write_json
from sieve.select import ratio_histogram, run_select
from sieve.verify.activation_rate import AR_COLUMNS  # ar.csv as Verify writes it
from sieve.verify_stats import wilson_interval

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "</script><script>alert('xss')</script>",
    "<!-- comment & \"quotes\" 'single' \u2028 line sep",
]
WORDS = [
    "red circle",
    "blue square",
    "striped triangle",
    "green star",
    "dotted circle",
    "yellow square",
    "checkerboard",
    "café ünïcode ✓",
    *HOSTILE,
]


N_GENERATED = 3


def concept_id(text: str) -> str:
    return stable_hash("concept", text)


def _image(path: Path, size: tuple[int, int], seed: int, boxes: int = 0) -> None:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    d = ImageDraw.Draw(img)
    for b in range(boxes):
        x = (b * 70) % max(size[0] - 40, 1)
        d.rectangle([x + 4, 8, x + 40, 44], outline=(255, 0, 0), width=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def make_results(
    root: Path,
    n_neurons: int = 24,
    n_images: int = 60,
    models=("toy",),
    probes=("pics",),
    concept_sets=("words",),
    baseline: bool = True,
    truth: bool = True,
    top_n: int = 6,
    tau: float = 3.0,
    grid_size: tuple[int, int] = (480, 200),
    seed: int = 0,
    generated_acts: bool = True,
) -> dict:
    """Write ``root/results``, ``root/benchmarks``; returns what was planted (for assertions)."""
    rng = np.random.default_rng(seed)
    results, bench = root / "results", root / "benchmarks"
    planted: dict = {"runs": {}}
    for m in models:
        for p in probes:
            acts = rng.random((n_images, n_neurons)) * 0.2 + 0.1
            sharp = list(range(0, n_neurons, 3))  # every third neuron fires strongly on a few images
            for n in sharp:
                acts[rng.choice(n_images, 3, replace=False), n] = 5.0
            acts[:, n_neurons - 1] = 0.0  # a dead neuron
            order = np.argsort(-acts, axis=0)[:top_n].T
            activations = {
                "activations": acts,
                "images": [f"img/{i:04d}.png" for i in range(n_images)],
                "probe_index": np.arange(n_images),
                "topk_index": order,
                "topk_value": np.take_along_axis(acts, order.T, axis=0).T,
                "attrs": {"model": m, "layer": "layer4", "probe": p, "n_skipped": 2},
            }
            sel_dir = results / m / p / "select"
            summary = run_select(
                activations, str(sel_dir / "summary.json"), str(sel_dir / "neurons"), tau=tau, top_n=top_n
            )
            ratio_histogram(summary, str(sel_dir / "ratio_histogram.png"))
            selected = [int(n) for n, v in summary["neurons"].items() if v["selected"]]
            for n in selected:
                k = 2 if n % 2 == 0 else 1
                ranks = list(range(top_n))
                members = [ranks[i::k] for i in range(k)]
                write_json(
                    results / m / p / "clusters" / f"{n}.json",
                    {
                        "neuron": n,
                        "crops": [
                            {
                                "rank": r,
                                "index": int(order[n, r]),
                                "path": f"img/{order[n, r]:04d}.png",
                                "box": [2, 2, 12, 12],
                                "activation": float(acts[order[n, r], n]),
                            }
                            for r in ranks
                        ],
                        "silhouette": {"2": 0.4, "3": 0.2},
                        "k": k,
                        "clusters": [
                            {"cluster": c, "members": members[c], "size": len(members[c])} for c in range(k)
                        ],
                        "dropped": [{"cluster": 9, "size": 1, "members": [top_n - 1]}] if k == 1 else [],
                    },
                )
                _image(results / m / p / "grids" / f"{n}.jpg", grid_size, seed=n, boxes=top_n)
            _image(
                results / m / p / "ablation" / f"{selected[0]}.png", (300, 200), seed=7
            )  # evaluate.ablate_neurons
            for cs in concept_sets:
                run = results / m / p / cs
                hyp_rows, truth_rows = [], []
                run_planted = {"selected": selected, "hypotheses": {}, "verified": {}}
                for n in selected:
                    k = 2 if n % 2 == 0 else 1
                    clusters = []
                    for c in range(k):
                        texts = [WORDS[(n + 2 * c + j) % len(WORDS)] for j in range(2)]
                        concepts = [
                            {"id": concept_id(t), "text": t, "score": round(0.3 - 0.01 * j, 3)}
                            for j, t in enumerate(texts)
                        ]
                        clusters.append({"cluster": c, "concepts": concepts})
                        for j, t in enumerate(texts):
                            ar = round(((n * 7 + c * 3 + j * 5) % 11) / 10, 2)
                            hyp_rows.append(
                                [n, c, t, concept_id(t), j, concepts[j]["score"], 10, int(round(ar * 10)), ar]
                            )
                    write_json(run / "hypotheses" / f"{n}.json", {"neuron": n, "clusters": clusters})
                    run_planted["hypotheses"][n] = clusters
                mean = float(np.mean([r[-1] for r in hyp_rows])) if hyp_rows else None
                kept = [r for r in hyp_rows if r[-1] >= mean]
                _write_csv(run / "verify" / "ar.csv", AR_COLUMNS, ar_rows(hyp_rows, mean))
                _write_generated(run / "verify" / "generated.json", {r[2] for r in hyp_rows})
                verified = sorted({r[0] for r in kept})
                write_json(
                    run / "verify" / "summary.json",
                    {
                        "n_hypotheses": len(hyp_rows),
                        "mean_ar_initial": mean,
                        "n_kept": len(kept),
                        "mean_ar_kept": float(np.mean([r[-1] for r in kept])) if kept else None,
                        "n_selected": len(selected),
                        "n_verified": len(verified),
                        **filters_summary(ar_rows(hyp_rows, mean)),
                    },
                )
                _write_csv(
                    run / "neuron_concepts.csv",
                    ["neuron", "status", "concepts"],
                    [
                        [
                            n,
                            "verified" if n in verified else ("unverified" if n in selected else "rejected"),
                            "|".join(r[2] for r in kept if r[0] == n),
                        ]
                        for n in range(n_neurons)
                    ],
                )
                run_planted["verified"] = {n: [r[2] for r in kept if r[0] == n] for n in verified}
                run_planted["mean_ar_initial"] = mean
                if truth:
                    for n in range(n_neurons):
                        truth_rows.append(
                            [
                                n,
                                "detector" if n in sharp else "redundant",
                                json.dumps([WORDS[n % len(WORDS)]], ensure_ascii=False),
                                n in selected,
                                json.dumps(run_planted["verified"].get(n, []), ensure_ascii=False),
                                n in verified,
                            ]
                        )
                    _write_csv(
                        run / "truth.csv",
                        ["neuron", "kind", "planted_concepts", "selected", "verified_concepts", "recovered"],
                        truth_rows,
                    )
                    write_json(
                        run / "truth_summary.json",
                        {  # the layout of sieve.evaluate.truth
                            "kinds": {
                                "detector": {
                                    "count": len(sharp),
                                    "selected_share": 1.0,
                                    "recovered_share": 0.5,
                                },
                                "redundant": {
                                    "count": n_neurons - len(sharp),
                                    "selected_share": 0.0,
                                    "recovered_share": None,
                                },
                            },
                            "recovery": 0.5,
                            "select_correct": True,
                            "mean_ar_initial": mean,
                            "hypotheses": {
                                "n": len(hyp_rows),
                                "n_wrong_kept": 1,
                                "n_wrong_kept_paper": 1,
                                "n_wrong_kept_specificity": 0,
                            },
                        },
                    )
                    write_json(
                        results / "stage_ablations" / m / p / cs / "ablations.json",
                        {
                            "synthetic": True,
                            "variants": [
                                {
                                    "variant": "full",
                                    "label": "all three (sieve)",
                                    "mean_ar": 0.8,
                                    "recovery": 0.9,
                                },
                                {
                                    "variant": "no_select",
                                    "label": "no Select",
                                    "mean_ar": 0.5,
                                    "recovery": 0.7,
                                },
                            ],
                        },
                    )
                    write_json(
                        run / "sweeps" / "tau.json",
                        [{"tau": 4, "n_selected": 9}, {"tau": 8, "n_selected": 5}],
                    )
                if baseline:
                    b = run / "baselines" / "clip_dissect"
                    rows = []
                    for n in selected:
                        t = WORDS[(n + 5) % len(WORDS)]
                        write_json(
                            b / "hypotheses" / f"{n}.json",
                            {
                                "neuron": n,
                                "clusters": [
                                    {
                                        "cluster": 0,
                                        "concepts": [{"id": concept_id(t), "text": t, "score": 1.5}],
                                    }
                                ],
                            },
                        )
                        rows.append([n, 0, t, concept_id(t), 0, 1.5, 10, n % 10, (n % 10) / 10])
                    bmean = float(np.mean([r[-1] for r in rows])) if rows else None
                    bkept = [r for r in rows if r[-1] >= bmean]
                    _write_csv(b / "verify" / "ar.csv", AR_COLUMNS, ar_rows(rows, bmean))
                    _write_generated(b / "verify" / "generated.json", {r[2] for r in rows})
                    write_json(
                        b / "verify" / "summary.json",
                        {
                            "n_hypotheses": len(rows),
                            "mean_ar_initial": bmean,
                            "n_kept": len(bkept),
                            "mean_ar_kept": float(np.mean([r[-1] for r in bkept])) if bkept else None,
                            "n_selected": len(selected),
                            "n_verified": len({r[0] for r in bkept}),
                            **filters_summary(ar_rows(rows, bmean)),
                        },
                    )
                planted["runs"][(m, p, cs)] = run_planted
            for stage, secs in (
                ("probe_activations", 3.5),
                ("select_neurons", 0.4),
                ("ratio_histogram", 0.3),
            ):
                _write_bench(bench / m / p / f"{stage}.tsv", secs)
    for shard, secs in enumerate([2.0, 3.0]):
        _write_bench(bench / "generate" / f"generate_{shard}.tsv", secs)
    for i, t in enumerate(WORDS):
        for j in range(N_GENERATED):
            _image(root / _thumb(t, j), (96, 96), seed=100 + 3 * i + j)
    if generated_acts:
        _write_manifest(root, models, n_neurons)
    write_json(
        results / "concepts" / concept_sets[0] / "concepts.json",
        {"concepts": [{"id": concept_id(t), "text": t} for t in WORDS]},
    )
    return planted


def _thumb(text: str, seed: int) -> str:
    """Where Verify's cache keeps a concept's thumbnail (relative to the workflow's working directory)."""
    key = stable_hash("prompt", text)
    return f"results/generate/cache/gen0/{key[:2]}/{key}/thumbs/{seed}.jpg"


def generated_pooled(text: str, n_neurons: int) -> np.ndarray:
    """The fixture's activations of every neuron on a concept's generated images, [N_GENERATED, n_neurons]: spread
    over 0..10, so that some are above a neuron's threshold and some below."""
    rng = np.random.default_rng(int(concept_id(text)[:8], 16))
    return (rng.random((N_GENERATED, n_neurons)) * 10.0).astype(np.float32)


def _write_manifest(root: Path, models, n_neurons: int) -> None:
    """A generation shard manifest as Verify's generate_shard writes it (the fields the report reads: each
    concept's texts, seeds and activations file per model) and the activations files (seeds, pooled)."""
    concepts = []
    for t in WORDS:
        key = stable_hash("prompt", t)
        entry = f"results/generate/cache/gen0/{key[:2]}/{key}"
        acts = {}
        for m in models:
            path = root / entry / "acts" / f"{m}.npz"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(
                path, seeds=np.arange(N_GENERATED, dtype=np.int64), pooled=generated_pooled(t, n_neurons)
            )
            acts[m] = f"{entry}/acts/{m}.npz"
        concepts.append(
            {
                "key": key,
                "prompt": t,
                "texts": [t],
                "ids": [concept_id(t)],
                "entry": entry,
                "seeds": list(range(N_GENERATED)),
                "acts": acts,
                "thumbs": [_thumb(t, j) for j in range(N_GENERATED)],
                "images": [],
            }
        )
    write_json(
        root / "results/generate/shards/0.json",
        {
            "shard": 0,
            "shards": 1,
            "models": {m: {"key": m} for m in models},
            "seeds": list(range(N_GENERATED)),
            "concepts": concepts,
        },
    )
    # the generation plan that sent shard 0 to a job (the report reads the manifests the plan names)
    write_json(
        root / "results/generate/plan/plan.json",
        {"shards": [{"shard": 0, "n_concepts": len(concepts), "work": True}], "work": [0]},
    )


def _write_generated(path: Path, texts: set[str]) -> None:
    write_json(
        path,
        {
            concept_id(t): {
                "text": t,
                "prompt": t,
                "seeds": list(range(N_GENERATED)),
                "thumbs": [_thumb(t, j) for j in range(N_GENERATED)],
                "images": [],
            }
            for t in sorted(texts)
        },
    )


def ar_rows(rows: list[list], mean: float | None) -> list[list]:
    """ar.csv rows as Verify writes them (AR_COLUMNS): the hypothesis' first 9 columns, then kept, the Wilson
    interval, a control rate, AUC and F1 made up from the row, and both filters (cap 0.35); kept = the paper's."""
    out = []
    for r in rows:
        n, c, j, k, ar = r[0], r[1], r[4], r[7], r[-1]
        rate = ((n * 3 + int(c) + int(j or 0)) % 7) / 10
        low, high = wilson_interval(int(k), 10)
        paper = int(mean is not None and ar >= mean)
        out.append(
            [*r, paper, low, high, rate, 0.5 + ar / 2, ar / (1 + rate), paper, int(paper and rate <= 0.35)]
        )
    return out


def filters_summary(rows: list[list]) -> dict:
    """summary.json's keys of the two filters for ``ar_rows``."""
    col = {name: i for i, name in enumerate(AR_COLUMNS)}
    filters = {}
    for name in ("paper", "specificity"):
        kept = [r for r in rows if r[col[f"kept_{name}"]]]
        filters[name] = {"n_kept": len(kept), "n_verified": len({r[0] for r in kept})}
    return {"filter": "paper", "max_control_rate": 0.35, "filters": filters}


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _write_bench(path: Path, secs: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
        f"{secs}\t0:00:0{int(secs)}\t100.0\t200.0\t90.0\t95.0\t0.0\t0.1\t50.0\t{secs}\n"
    )


def read_data_blob(html_text: str) -> dict:
    """The JSON blob of a built page (the test's view of what the browser parses)."""
    start = html_text.index('<script id="sieve-data" type="application/json">') + len(
        '<script id="sieve-data" type="application/json">'
    )
    end = html_text.index("</script>", start)
    return json.loads(html_text[start:end])
