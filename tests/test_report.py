"""The HTML report: escaping of untrusted concept text, the neuron table's rows, cards and assets, scale,
bad input, and the `report` rule end to end."""

from __future__ import annotations

import csv
import json
import re
import time
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image
from report_fixtures import HOSTILE, N_GENERATED, WORDS, generated_pooled, make_results, read_data_blob

from sieve.report import ReportError, build_report, embed_json, json_table, read_benchmarks

NASTY = [*HOSTILE, "</SCRIPT >", "<!--<script>", "]]>", "\u2028\u2029", "a & b", "\"'`${x}`"]


def build(root: Path, **kw) -> dict:
    out = root / "results" / "report"
    return build_report(
        out / "index.html", out / "assets", results=root / "results", benchmarks=root / "benchmarks", **kw
    )


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    planted = make_results(root, n_neurons=30, concept_sets=("words",))
    data = build(
        root,
        models=["toy"],
        probes=["pics"],
        concept_sets=["words"],
        title="<script>alert(1)</script> run",
        settings={
            "models": {"toy": {"source": "python", "factory": "tinymodels:hotspot_cnn"}},
            "probes": {"pics": {"kind": "imagefolder", "path": "/data/pics"}},
            "concept_sets": {"words": {"path": "words.txt"}},
            "generator": {"source": "diffusers", "steps": 1, "images_per_concept": 3},
        },
        generated_per_concept=2,
        comparison_csv=root / "results/report/comparison.csv",
        ar_png=root / "results/report/ar.png",
    )
    return root, planted, data


# ------------------------------------------------------------------------------------------------- escaping
@pytest.mark.parametrize("text", NASTY)
def test_embed_json_cannot_break_out_of_its_script_element(text):
    out = embed_json({"concept": text, "list": [text]})
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in out
    assert json.loads(out) == {"concept": text, "list": [text]}


def test_hostile_concepts_and_title_stay_text_in_the_page(built):
    root, _, data = built
    page = (root / "results/report/index.html").read_text(encoding="utf-8")
    tags = Tags()
    tags.feed(page)
    scripts = [a for t, a in tags.tags if t == "script"]
    assert scripts == [{"id": "sieve-data", "type": "application/json"}, {"src": "assets/report.js"}]
    assert not [t for t, _ in tags.tags if t == "img"]  # no markup from the data, only from report.js
    assert "&lt;script&gt;alert(1)&lt;/script&gt; run" in page
    # the blob parses back to exactly the concept text, hostile or not
    blob = read_data_blob(page)
    assert blob == json.loads(json.dumps(data))
    texts = {
        c["text"]
        for card in blob["runs"][0]["cards"].values()
        for cl in card["clusters"]
        for c in cl["concepts"]
    }
    assert set(HOSTILE) <= texts
    assert "café ünïcode ✓" in texts


# --------------------------------------------------------------------------------------------- table rows
def test_neuron_rows_match_the_result_files(built):
    root, planted, data = built
    run = data["runs"][0]
    summary = json.loads((root / "results/toy/pics/select/summary.json").read_text())
    assert [r["id"] for r in run["neurons"]] == [str(i) for i in range(30)]
    ar_rows = read_csv(root / "results/toy/pics/words/verify/ar.csv")
    kept, best = defaultdict(dict), defaultdict(float)
    for r in ar_rows:
        best[r["neuron"]] = max(best[r["neuron"]], float(r["ar"]))
        if r["kept"] == "1":
            kept[r["neuron"]][r["concept"]] = max(kept[r["neuron"]].get(r["concept"], 0), float(r["ar"]))
    truth = {r["neuron"]: r for r in read_csv(root / "results/toy/pics/words/truth.csv")}
    for row in run["neurons"]:
        info = summary["neurons"][row["id"]]
        assert row["selected"] == info["selected"]
        assert row["ratio"] == pytest.approx(info["ratio"], rel=1e-3)
        assert row["verified"] == sorted(([t, a] for t, a in kept[row["id"]].items()), key=lambda v: -v[1])
        assert row["best_ar"] == (pytest.approx(best[row["id"]]) if row["id"] in best else None)
        assert row["truth"] == ", ".join(json.loads(truth[row["id"]]["planted_concepts"]))
        expected = (
            "dead"
            if info["dead"]
            else "rejected"
            if not info["selected"]
            else "verified"
            if kept[row["id"]]
            else "unverified"
        )
        assert row["status"] == expected
        if info["selected"]:
            assert row["k"] == len(planted["runs"][("toy", "pics", "words")]["hypotheses"][int(row["id"])])
        else:
            assert row["k"] is None and row["id"] not in run["cards"]
    assert run["neurons"][-1]["status"] == "dead"
    assert sorted(map(int, run["cards"])) == planted["runs"][("toy", "pics", "words")]["selected"]
    assert run["baselines"] == ["clip_dissect"] and run["has_truth"]


def test_comparison_summary_and_snakemake_report_files(built):
    root, planted, data = built
    vs = json.loads((root / "results/toy/pics/words/verify/summary.json").read_text())
    rows = read_csv(root / "results/report/comparison.csv")
    assert [r["method"] for r in rows] == ["sieve", "clip_dissect"]
    assert float(rows[0]["mean AR initial"]) == pytest.approx(vs["mean_ar_initial"], abs=1e-4)
    assert int(rows[0]["verified"]) == vs["n_verified"] and rows[0]["recovery"] == "0.5"
    assert rows[0]["selected"] == str(len(planted["runs"][("toy", "pics", "words")]["selected"]))
    with Image.open(root / "results/report/ar.png") as img:
        assert img.size[0] > 300
    facts = dict(map(tuple, data["runs"][0]["facts"]))
    assert facts["skipped images"] == 2 and facts["mean AR initial"] == pytest.approx(
        vs["mean_ar_initial"], abs=1e-4
    )
    settings = {t["title"]: t for t in data["settings"]}
    assert settings["Concept sets"]["rows"] == [["words", "words.txt", len(WORDS)]]
    assert ["steps", 1] in settings["Generator"]["rows"]
    tables = {t["title"]: t for t in data["runs"][0]["tables"]}
    assert list(tables) == ["Planted truth: per kind", "Planted truth: overall", "sweeps/tau", "ablations"]
    assert tables["Planted truth: per kind"]["rows"][0] == ["detector", 10, 1.0, 0.5]
    assert ["hypotheses.n_wrong_kept", 1] in tables["Planted truth: overall"]["rows"]
    assert tables["ablations"]["columns"] == ["variant", "label", "mean_ar", "recovery"]
    assert tables["ablations"]["rows"][1] == ["no_select", "no Select", 0.5, 0.7]
    assert tables["ablations"]["note"] == "synthetic = True"
    assert tables["sweeps/tau"]["rows"] == [[4, 9], [8, 5]]


def test_cards_have_web_sized_images(built):
    root, _, data = built
    run = data["runs"][0]
    report = root / "results/report"
    card = next(c for c in run["cards"].values() if len(c["clusters"]) == 2)
    with Image.open(report / card["grid"]) as img:
        assert img.format == "JPEG" and img.size[0] <= 960 and img.size[1] <= 2400
    gens = [g for cl in card["clusters"] for c in cl["concepts"] for g in c["generated"]]
    assert gens and all(len(c["generated"]) == 2 for cl in card["clusters"] for c in cl["concepts"])
    for g in gens:
        with Image.open(report / g) as img:
            assert img.format == "JPEG" and max(img.size) <= 160
    ablated = [n for n, c in run["cards"].items() if c.get("ablation")]
    assert (
        ablated == [str(min(map(int, run["cards"])))]
        and (report / run["cards"][ablated[0]]["ablation"]).is_file()
    )
    one = next(c for c in run["cards"].values() if len(c["clusters"]) == 1)
    assert one["dropped"][0]["size"] == 1 and one["clusters"][0]["members"]
    for name in ("report.js", "report.css"):
        assert (report / "assets" / name).stat().st_size > 1000
    # offline: nothing is fetched from anywhere but assets/
    text = (report / "index.html").read_text() + (report / "assets/report.css").read_text()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    js = (report / "assets/report.js").read_text()
    assert not re.search(
        r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write|eval\(|new Function", js
    )


def test_top_images_and_generated_images_carry_their_activations(built):
    """Each card lists its top images' activations (by rank, from clusters/{n}.json) and, per hypothesis, the
    neuron's activation on every generated image as Verify's activations files hold it, with fired = above the
    neuron's threshold (what the AR counts); the thumbnails shown carry the values of their seeds."""
    root, _, data = built
    summary = json.loads((root / "results/toy/pics/select/summary.json").read_text())
    n_checked = 0
    for nid, card in data["runs"][0]["cards"].items():
        crops = json.loads((root / f"results/toy/pics/clusters/{nid}.json").read_text())["crops"]
        assert card["top"] == [
            pytest.approx(c["activation"], abs=1e-4) for c in sorted(crops, key=lambda c: c["rank"])
        ]
        threshold = summary["neurons"][nid]["threshold"]
        assert card["threshold"] == pytest.approx(threshold, abs=1e-4)
        for h in [c for cl in card["clusters"] for c in cl["concepts"]] + [
            c for cl in card["baselines"]["clip_dissect"] for c in cl["concepts"]
        ]:
            pooled = generated_pooled(h["text"], 30)[:, int(nid)].astype(np.float64)
            assert h["acts"] == [pytest.approx(v, abs=1e-4) for v in pooled]
            assert h["fired"] == [int(v > threshold) for v in pooled]
            assert (
                len(h["generated"]) == len(h["gen_acts"]) == len(h["gen_fired"]) == 2
            )  # generated_per_concept
            assert h["gen_acts"] == h["acts"][:2] and h["gen_fired"] == h["fired"][:2]
            n_checked += 1
    assert n_checked > 10
    fired = [
        f
        for card in data["runs"][0]["cards"].values()
        for cl in card["clusters"]
        for c in cl["concepts"]
        for f in c["fired"]
    ]
    assert 0 < sum(fired) < len(fired) and len(fired) % N_GENERATED == 0  # both kinds are shown


def test_generated_images_without_verify_activations_show_no_values(tmp_path):
    make_results(tmp_path, n_neurons=12, baseline=False, truth=False, generated_acts=False)
    data = build(tmp_path, models=["toy"], probes=["pics"], concept_sets=["words"])
    hyps = [
        c for card in data["runs"][0]["cards"].values() for cl in card["clusters"] for c in cl["concepts"]
    ]
    assert hyps and all(h["generated"] and "acts" not in h and "gen_acts" not in h for h in hyps)


def _links(data: dict) -> list[str]:
    run_links = [f[1] for r in data["runs"] for f in r["files"]]
    run_links += [t["source"] for r in data["runs"] for t in r["tables"] if t.get("source")]
    run_links += [f[1] for r in data["runs"] for c in r["cards"].values() for f in c["files"]]
    return [f[1] for f in data["files"]] + run_links


def test_links_to_the_files_the_page_was_built_from_resolve(built):
    """Relative links from results/report/index.html (../toy/pics/...), so that they work when the results
    folder is opened locally or copied whole: every one names an existing file of the results tree."""
    root, _, data = built
    report = root / "results/report"
    links = _links(data)
    assert all(not link.startswith(("/", "file:", "http")) for link in links)
    targets = {(report / unquote(link)).resolve() for link in links}
    assert all(t.is_file() for t in targets), [t for t in targets if not t.is_file()]
    results = (root / "results").resolve()
    names = {t.relative_to(results).as_posix() for t in targets}
    assert {
        "report/comparison.csv",
        "report/ar.png",
        "toy/pics/select/summary.json",
        "toy/pics/words/verify/ar.csv",
        "toy/pics/words/neuron_concepts.csv",
        "toy/pics/words/truth_summary.json",
        "toy/pics/words/baselines/clip_dissect/verify/ar.csv",
        "stage_ablations/toy/pics/words/ablations.json",
        "toy/pics/words/sweeps/tau.json",
    } <= names
    card_id, card = next(iter(data["runs"][0]["cards"].items()))
    assert {unquote(f[1]) for f in card["files"]} == {
        f"../toy/pics/grids/{card_id}.jpg",
        f"../toy/pics/clusters/{card_id}.json",
        f"../toy/pics/words/hypotheses/{card_id}.json",
    }


def test_links_escape_names(tmp_path):
    """A name with a space, '#' or '%' is escaped in links and anchors (it would otherwise end the path or
    start a fragment)."""
    from sieve.report.build import card_anchor, run_anchor

    assert run_anchor("my model", "a#b", "50%/x") == "my%20model/a%23b/50%25%2Fx"
    assert card_anchor(run_anchor("m", "p", "c"), "7") == "m/p/c/n7"
    make_results(tmp_path, n_neurons=9, models=("my model",), probes=("p#1",), baseline=False, truth=False)
    data = build(tmp_path, models=["my model"], probes=["p#1"], concept_sets=["words"])
    run = data["runs"][0]
    assert run["anchor"] == "my%20model/p%231/words"
    assert {f[1] for f in run["files"]} >= {"../my%20model/p%231/select/summary.json"}
    assert all((tmp_path / "results/report" / unquote(link)).is_file() for link in _links(data))


def test_deep_links_survive_adding_a_model(tmp_path):
    """A card's link names its section ({model}/{probe}/{concept set}/n{neuron}), not its position: building the
    report again with another model before it keeps every anchor of the first."""
    make_results(tmp_path, n_neurons=12, models=("alpha", "toy"), baseline=False, truth=False)
    alone = build(tmp_path, models=["toy"], probes=["pics"], concept_sets=["words"])
    both = build(tmp_path, models=["alpha", "toy"], probes=["pics"], concept_sets=["words"])
    toy = next(r for r in both["runs"] if r["model"] == "toy")
    assert alone["runs"][0]["anchor"] == toy["anchor"] == "toy/pics/words"
    assert (
        {n: c["anchor"] for n, c in alone["runs"][0]["cards"].items()}
        == {n: c["anchor"] for n, c in toy["cards"].items()}
        == {n: f"toy/pics/words/n{n}" for n in toy["cards"]}
    )
    anchors = [r["anchor"] for r in both["runs"]] + [
        c["anchor"] for r in both["runs"] for c in r["cards"].values()
    ]
    assert len(anchors) == len(set(anchors))


def test_ar_histogram_has_a_y_axis_and_its_legend_beside_the_bars(built):
    from sieve.report.tables import ar_figure

    _, _, data = built
    runs = [{**r, "ar": r["ar"]} for r in data["runs"]]
    fig = ar_figure(runs)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2  # sieve and clip_dissect
    for ax in axes:
        assert ax.get_ylabel() == "hypotheses"
        ticks = [t for t in ax.get_yticklabels() if t.get_text()]
        assert len(ticks) >= 2 and all(float(t.get_text().replace("−", "-")).is_integer() for t in ticks)
        legend = ax.get_legend().get_window_extent(renderer)
        frame = ax.get_window_extent(renderer)
        assert legend.x0 >= frame.x1, "the legend must not cover the bars"
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_scales_to_2048_neurons(tmp_path):
    make_results(
        tmp_path, n_neurons=2048, n_images=40, baseline=False, truth=False, grid_size=(96, 40), top_n=4
    )
    t = time.perf_counter()
    data = build(tmp_path, models=["toy"], probes=["pics"], concept_sets=["words"])
    took = time.perf_counter() - t
    page = tmp_path / "results/report/index.html"
    assets = sum(p.stat().st_size for p in (tmp_path / "results/report/assets").rglob("*") if p.is_file())
    assert len(data["runs"][0]["neurons"]) == 2048 and len(data["runs"][0]["cards"]) > 600
    assert page.stat().st_size < 3e6, "the data blob must stay small"
    assert assets < 20e6
    assert took < 60


# ------------------------------------------------------------------------------------ partial and bad input
def test_report_of_a_run_stopped_after_select(tmp_path):
    make_results(tmp_path, n_neurons=12, baseline=False, truth=False)
    for sub in ("words", "clusters", "grids"):
        for p in sorted((tmp_path / "results/toy/pics" / sub).rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
    data = build(tmp_path, models=["toy"], probes=["pics"], concept_sets=["words"])
    run = data["runs"][0]
    assert {r["status"] for r in run["neurons"]} == {"selected", "rejected", "dead"}
    assert run["ar"] == {} and run["methods"] == [] and all(c["grid"] is None for c in run["cards"].values())
    assert data["comparison"]["rows"][0][3] == "sieve" and data["comparison"]["rows"][0][9] is None


def test_kept_defaults_to_the_initial_mean_without_a_kept_column(tmp_path):
    make_results(tmp_path, n_neurons=12, baseline=False, truth=False)
    ar_csv = tmp_path / "results/toy/pics/words/verify/ar.csv"
    rows = read_csv(ar_csv)
    with open(ar_csv, "w", newline="") as fh:
        w = csv.DictWriter(fh, [c for c in rows[0] if c != "kept"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    mean = json.loads((ar_csv.parent / "summary.json").read_text())["mean_ar_initial"]
    data = build(tmp_path, models=["toy"], probes=["pics"], concept_sets=["words"])
    got = [
        c["kept"]
        for card in data["runs"][0]["cards"].values()
        for cl in card["clusters"]
        for c in cl["concepts"]
    ]
    assert got == [float(r["ar"]) >= mean for r in rows]
    assert got == [r["kept"] == "1" for r in rows]


def test_bad_files_name_the_file_and_the_problem(tmp_path):
    make_results(tmp_path, n_neurons=12, baseline=False, truth=False)
    kw = {"models": ["toy"], "probes": ["pics"], "concept_sets": ["words"]}
    with pytest.raises(ReportError, match=r"missing selection summary .*nope/pics/select/summary.json"):
        build(tmp_path, **{**kw, "models": ["nope"]})
    ar_csv = tmp_path / "results/toy/pics/words/verify/ar.csv"
    good = ar_csv.read_text()
    lines = good.splitlines()
    cells = lines[2].split(",")
    cells[lines[0].split(",").index("ar")] = "lots"
    ar_csv.write_text("\n".join([*lines[:2], ",".join(cells), *lines[3:]]) + "\n")
    with pytest.raises(ReportError, match=r"ar\.csv row 3 column ar: 'lots' is not a number"):
        build(tmp_path, **kw)
    ar_csv.write_text(good)
    hyp = sorted((tmp_path / "results/toy/pics/words/hypotheses").glob("*.json"))[0]
    hyp.write_text('{"neuron": 0, "clusters": [')
    with pytest.raises(ReportError, match=rf"{hyp.name}: not valid JSON"):
        build(tmp_path, **kw)
    # a failed build leaves no page behind
    assert not (tmp_path / "results/report/index.html").exists()


# -------------------------------------------------------------------------------------------- small pieces
def test_benchmarks_are_summed_per_stage(tmp_path):
    make_results(tmp_path, n_neurons=6, models=("a", "b"), baseline=False, truth=False)
    t = read_benchmarks(tmp_path / "benchmarks")
    rows = {r[0]: r[1:] for r in t["rows"]}
    assert rows["generate"] == [2, 5.0, 3.0]
    assert rows["probe_activations"] == [2, 7.0, 3.5]
    assert t["total_s"] == pytest.approx(5.0 + 7.0 + 0.8 + 0.6)
    assert read_benchmarks(tmp_path / "missing")["rows"] == []


def test_json_tables():
    assert json_table([{"a": 1, "b": 0.123456}, {"a": 2, "c": "x"}], "t")["rows"] == [
        [1, 0.1235, None],
        [2, None, "x"],
    ]
    t = json_table({"tau=4": {"mean_ar": 0.5}, "tau=8": {"mean_ar": 0.7, "n": 3}}, "sweep")
    assert t["columns"] == ["", "mean_ar", "n"] and t["rows"][1] == ["tau=8", 0.7, 3]
    assert json_table({"x": [1, 2]}, "t")["rows"] == [["x", "[1, 2]"]]


def test_sweep_and_stage_ablation_jobs_are_their_own_stages(tmp_path):
    """benchmarks/sweeps/... and benchmarks/stage_ablations/... hold other rules' jobs of the same file names:
    they are not folded into the run's own stages, and a fractional swept tau is a number, not part of a stage
    name."""
    bench = tmp_path / "benchmarks"

    def write(rel, secs):
        (bench / rel).parent.mkdir(parents=True, exist_ok=True)
        (bench / rel).write_text(f"s\th:m:s\n{secs}\t0:00:01\n")

    write("m/p/select_neurons.tsv", 1.0)
    write("stage_ablations/m/p/no_select/select_neurons.tsv", 2.0)
    write("sweeps/m/p/select_neurons.tsv", 4.0)
    for i, tau in enumerate(("0.5", "1.5", "4", "1e-05")):
        write(f"sweeps/m/p/c/tau_{tau}.tsv", 10.0 + i)
    write("generate/generate_shard_0.tsv", 3.0)
    write("generate/generate_shard_1.tsv", 5.0)
    write("stage_ablations/generate/generate_shard_0.tsv", 8.0)
    rows = {r[0]: r[1:] for r in read_benchmarks(bench)["rows"]}
    assert rows == {
        "select_neurons": [1, 1.0, 1.0],
        "stage_ablations/select_neurons": [1, 2.0, 2.0],
        "sweeps/select_neurons": [1, 4.0, 4.0],
        "sweeps/tau": [4, 46.0, 13.0],
        "generate_shard": [2, 8.0, 5.0],
        "stage_ablations/generate_shard": [1, 8.0, 8.0],
    }


def test_run_summary_shows_only_the_settings_of_the_source_in_use():
    """The schema fills in diffusers' defaults (model, steps, ...) whatever generator.source is: the summary
    leaves out what the source in use ignores, for the generator and the embedder alike."""
    from sieve.report.tables import settings_tables

    defaults = {
        "model": "stabilityai/sdxl-turbo",
        "steps": 1,
        "guidance_scale": 0.0,
        "resolution": 512,
        "images_per_concept": 20,
        "prompt": "{}",
        "batch_size": 16,
        "dtype": "auto",
        "shards": 8,
        "seed": 0,
        "keep_images": "thumbnails",
        "thumbnail_size": 128,
    }
    common = {"images_per_concept", "prompt", "batch_size", "shards", "seed", "keep_images", "thumbnail_size"}

    def tables(generator, embedder):
        out = {t["title"]: t for t in settings_tables({"generator": generator, "embedder": embedder}, [])}
        return (
            out["Generator"],
            {r[0]: r[1] for r in out["Generator"]["rows"]},
            {r[0]: r[1] for r in out["Embedder"]["rows"]},
        )

    table, gen, emb = tables(
        {"source": "synthetic", **defaults},
        {"source": "synthetic", "arch": "ViT-B-16", "pretrained": "openai", "batch_size": 64},
    )
    assert set(gen) == {"source"} | common and gen["source"] == "synthetic" and "note" not in table
    assert emb == {"source": "synthetic", "batch_size": 64}

    table, gen, emb = tables(
        {"source": "python", "factory": "pkg.mod:make", **defaults},
        {"source": "python", "factory": "pkg.mod:clip", "kwargs": {"dim": 8}, "batch_size": 64},
    )
    assert set(gen) == {"source", "factory"} | common
    assert (
        "resolution = 512" in table["note"] and "steps = 1" in table["note"] and "sdxl" not in table["note"]
    )
    assert emb == {"source": "python", "factory": "pkg.mod:clip", "kwargs": '{"dim": 8}', "batch_size": 64}

    table, gen, emb = tables(
        dict(defaults),
        {
            "source": "open_clip",
            "arch": "ViT-B-16",
            "pretrained": "openai",
            "factory": "stray",
            "batch_size": 64,
        },
    )
    assert set(gen) == set(defaults) and gen["model"] == "stabilityai/sdxl-turbo"  # no source: diffusers
    assert emb == {"source": "open_clip", "arch": "ViT-B-16", "pretrained": "openai", "batch_size": 64}
    _, gen, _ = tables({"source": "plugin", **defaults}, {"source": "plugin", "x": 1})
    assert set(gen) == {"source"} | set(defaults)  # a source the report does not know: every setting


def test_several_models_probes_and_concept_sets_get_a_section_each(tmp_path):
    make_results(
        tmp_path,
        n_neurons=9,
        models=("m1", "m2"),
        probes=("p1", "p2"),
        concept_sets=("c1", "c2"),
        truth=False,
    )
    data = build(tmp_path, models=["m1", "m2"], probes=["p1", "p2"], concept_sets=["c1", "c2"])
    assert [r["key"] for r in data["runs"]] == [
        f"{m} / {p} / {c}" for m in ("m1", "m2") for p in ("p1", "p2") for c in ("c1", "c2")
    ]
    assert len(data["comparison"]["rows"]) == 8 * 2
    assert {r[3] for r in data["comparison"]["rows"]} == {"sieve", "clip_dissect"}


# ------------------------------------------------------------------------------------------- end to end
@pytest.mark.workflow
@pytest.mark.slow
def test_report_rule_end_to_end(tmp_path):
    """`snakemake` with no target builds the report last, over what every stage wrote; a hostile concept of the
    concept set arrives in the page as data, and a changed report setting reruns only the report."""
    from helpers import jobs_run, make_image_folder, run_snakemake, tiny_config
    from tinyclip import make_tiny_clip

    images = make_image_folder(tmp_path / "images", n_per_class=6, corrupt=1)
    words = tmp_path / "words.txt"
    words.write_text("red\nblue\n<img src=x onerror=alert(1)>\n</script><b>bold</b>\n", encoding="utf-8")
    cfg = tiny_config(
        images,
        words,
        embedder=make_tiny_clip(tmp_path / "clip"),
        generator={
            "source": "python",
            "factory": "tinydiffusion:pattern_generator",
            "resolution": 16,
            "images_per_concept": 3,
            "shards": 1,
            "thumbnail_size": 16,
        },
        hypothesize={"concepts_per_cluster": 4},
        report={"generated_per_concept": 2},
    )
    proc = run_snakemake(tmp_path, cfg)
    assert jobs_run(proc)["report"] == 1
    out = tmp_path / "results/report"
    page = (out / "index.html").read_text(encoding="utf-8")
    data = read_data_blob(page)
    run = data["runs"][0]
    summary = json.loads((tmp_path / "results/tiny/pics/select/summary.json").read_text())
    assert len(run["neurons"]) == summary["n_neurons"] and len(run["cards"]) == summary["n_selected"] > 0
    hyps = {c["text"] for card in run["cards"].values() for cl in card["clusters"] for c in cl["concepts"]}
    assert "<img src=x onerror=alert(1)>" in hyps and "</script><b>bold</b>" in hyps
    assert "</script><b>" not in page
    card = next(iter(run["cards"].values()))
    assert card["grid"] and (out / card["grid"]).is_file()
    gens = [c["generated"] for cl in card["clusters"] for c in cl["concepts"]]
    assert gens and all(len(g) == 2 and all((out / p).is_file() for p in g) for g in gens)
    # the activations shown on the generated images are Verify's: as many fired as the AR counted
    ar_rows = {
        (r["neuron"], r["cluster"], r["concept_id"]): r
        for r in read_csv(tmp_path / "results/tiny/pics/words/verify/ar.csv")
    }
    for nid, c in run["cards"].items():
        for cl in c["clusters"]:
            for h in cl["concepts"]:
                row = ar_rows[(nid, cl["id"], h["id"])]
                assert len(h["acts"]) == int(row["n_images"]) == 3 and sum(h["fired"]) == int(row["n_active"])
        assert c["top"] and all(isinstance(v, float) for v in c["top"])  # each top image's activation
    assert (out / unquote(run["files"][0][1])).is_file()
    verify = json.loads((tmp_path / "results/tiny/pics/words/verify/summary.json").read_text())
    assert data["comparison"]["rows"][0][9] == pytest.approx(verify["mean_ar_initial"], abs=1e-4)
    stages = {r[0] for r in data["timing"]["rows"]}
    assert {
        "probe_activations",
        "select_neurons",
        "hypothesize",
        "generate_shard",
        "activation_rate",
    } <= stages
    # the predicted cost beside the measured: every count read from the run's own files, every stage timed
    cost_rows = data["cost"]["rows"]
    assert [r[0] for r in cost_rows] == ["probe", "embed_crops", "generate"]
    assert all(isinstance(r[2], int) and isinstance(r[3], int) and 0 < r[3] <= r[2] for r in cost_rows)
    assert all(isinstance(r[-1], float) for r in cost_rows)
    assert (out / "comparison.csv").is_file() and (out / "ar_distribution.png").is_file()

    cfg["report"]["title"] = "second title"
    ran = jobs_run(run_snakemake(tmp_path, cfg))
    assert ran == {"report": 1, "all": 1}
    assert "<title>second title</title>" in (out / "index.html").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------- neuron grids
def _grid_doc(n: int = 2, dropped: int = 0) -> dict:
    crops = [
        {"rank": r, "probe_index": r, "box": [8, 8, 40, 48], "activation": round(2.5 - r / 8, 3)}
        for r in range(n + dropped)
    ]
    return {
        "neuron": 3,
        "k": 1,
        "clusters": [{"cluster": 0, "members": list(range(n)), "size": n}],
        "dropped": [{"cluster": 1, "members": list(range(n, n + dropped)), "size": dropped}]
        if dropped
        else [],
        "crops": crops,
    }


def test_grid_draws_each_top_image_with_its_activation_map():
    """Below each top image, its activation map: hottest (the colour ramp's end) where the probe stage's map
    peaks, at that place in the cell; a grid without maps has no such pixels and is one tile row shorter."""
    from sieve.report.grids import HEAT_LUT, draw_grid

    tile, size = 96, 64
    doc = _grid_doc(2)
    thumbs = {r: np.full((tile, tile, 3), 128, np.uint8) for r in range(2)}
    maps = np.zeros((2, 4, 4), np.float16)
    maps[0, 0, 0] = 3.0  # rank 0 fires top left, rank 1 bottom right
    maps[1, 3, 3] = 3.0
    plain = np.asarray(draw_grid(doc, thumbs, size, tile).convert("RGB"))
    img = np.asarray(draw_grid(doc, thumbs, size, tile, maps=maps).convert("RGB"))
    assert img.shape[0] == plain.shape[0] + tile
    hot = np.all(np.abs(img.astype(int) - HEAT_LUT[255].round().astype(int)) <= 2, axis=2)
    assert not np.all(np.abs(plain.astype(int) - HEAT_LUT[255].round().astype(int)) <= 2, axis=2).any()
    ys, xs = np.nonzero(hot)
    assert len(xs) > 20
    split = (xs.min() + xs.max()) / 2
    left, right = xs < split, xs >= split
    assert left.any() and right.any()
    assert ys[left].mean() < ys[right].mean() - tile / 2  # top of the first cell, bottom of the second
    assert xs[left].mean() < xs[left].min() + tile / 2 and xs[right].mean() > xs[right].max() - tile / 2


def test_grid_cells_hold_their_image_box_map_and_label():
    """Each cell, found by its image's colour: the image fills a tile x tile square, the crop box (scaled to the
    tile) is a white line between black ones at the box's place, the map fills the square below, the label below
    that is "#rank activation" exactly as Pillow writes it, the cluster label is in the cluster's colour, and an
    image that cannot be read is a grey tile. RGB (the tests') and RGBX (the job's) thumbnails draw the same."""
    from PIL import ImageDraw

    from sieve.report.grids import (
        FONT_PX,
        PALETTE,
        draw_grid,
        grid_font,
        heat_tiles,
        normalized_maps,
        overlay,
    )

    tile, size = 96, 64
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    doc = _grid_doc(2, dropped=1)
    thumbs = {
        r: np.full((tile, tile, 3), c, np.uint8) for r, c in enumerate(colours[:2])
    }  # rank 2: unreadable
    maps = np.random.default_rng(0).random((3, 4, 4)).astype(np.float32)
    grid = draw_grid(doc, thumbs, size, tile, maps=maps)
    assert grid.mode == "RGBX"
    img = np.asarray(grid.convert("RGB")).astype(int)
    rgbx = {
        r: np.concatenate([t, np.full((tile, tile, 1), 255, np.uint8)], axis=2) for r, t in thumbs.items()
    }
    assert np.array_equal(np.asarray(draw_grid(doc, rgbx, size, tile, maps=maps)), np.asarray(grid))
    font = grid_font()
    for r, colour in enumerate([*colours[:2], (160, 160, 160)]):
        mask = np.all(img == colour, axis=2)  # rows and columns mostly of it: the tile (not antialiased text)
        ys, xs = np.nonzero(mask.sum(axis=1) > tile // 2)[0], np.nonzero(mask.sum(axis=0) > tile // 2)[0]
        y, x = ys.min(), xs.min()
        assert (ys.max() - y, xs.max() - x) == (tile - 1, tile - 1)  # the whole tile, box lines aside
        # the box [8, 8, 40, 48] of a 64 px input: columns 12..59, rows 12..71 of the tile, drawn inclusive
        x0, y0, x1, y1 = x + 12, y + 12, x + 59, y + 71
        assert (img[y0, x0 : x1 + 1] == 255).all() and (img[y0 : y1 + 1, x1] == 255).all()  # white line
        for off in (1, -1):  # black on both sides of it
            assert (img[y0 + off, x0 + 2 : x1 - 1] == 0).all() and (img[y0 + 2 : y1 - 1, x1 + off] == 0).all()
        assert (img[y0 + 2 : y1 - 1, x0 + 2 : x1 - 1] == colour).all()  # inside the box: the image
        # the map below: the overlay of this image with this rank's map, pixel for pixel
        below = np.asarray(grid)[y + tile : y + 2 * tile, x : x + tile]

        want = overlay(
            np.full((1, tile, tile, 3), colour, np.uint8), heat_tiles(normalized_maps(maps), tile)[r : r + 1]
        )
        assert np.array_equal(below.view(np.uint32)[..., 0], want[0])
        label = f"#{r} {doc['crops'][r]['activation']:.3g}"
        ref = Image.new("L", (tile, FONT_PX + 5), 0)  # the label alone: the next cell's label comes after
        ImageDraw.Draw(ref).text((0, 0), label, fill=255, font=font)
        cov = np.asarray(ref).astype(int)
        ly = y + 2 * tile + 2
        got = 255 - img[ly : ly + cov.shape[0], x : x + cov.shape[1]]
        assert (cov > 0).sum() > 50 and np.array_equal(got[..., 0], cov[: got.shape[0]])
    # the cluster labels in their colours, left of the cells; the dropped cluster in grey
    left = img[:, :140]
    for colour in (PALETTE[0], (120, 120, 120)):
        assert np.all(np.abs(left - np.array(colour)) <= 3, axis=2).sum() > 20


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest", "lanczos"])
def test_grid_thumbnails_are_the_models_view_without_torch(interpolation):
    """Preprocess.view (Pillow only, what the grids draw) is the model's view pixel for pixel: resize of the short
    side then centre crop, as torchvision's transforms give it (landscape, portrait, already sized, smaller than
    the crop); with ``size`` it is that square resampled once, close to resizing the view."""
    from torchvision.transforms import functional as TF

    from sieve.backends.preprocess import Preprocess

    rng = np.random.default_rng(0)
    for w, h in [(300, 200), (199, 301), (256, 256), (100, 50), (224, 224)]:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        for pre in (
            Preprocess(interpolation=interpolation),
            Preprocess(input_size=300, resize=256, interpolation=interpolation),  # padded with zeros
        ):
            view = pre.view(img)
            assert view.size == (pre.input_size, pre.input_size)
            assert np.array_equal(TF.to_tensor(view).numpy(), pre.geometric(img).numpy())
    gx, gy = np.meshgrid(np.linspace(0, 255, 320), np.linspace(0, 255, 240))
    smooth = Image.fromarray(np.stack([gx, gy, np.full_like(gx, 90.0)], -1).round().astype(np.uint8))
    pre = Preprocess(interpolation=interpolation)
    thumb = np.asarray(pre.view(smooth, size=48)).astype(int)
    assert thumb.shape == (48, 48, 3)
    assert np.abs(thumb - np.asarray(pre.view(smooth).resize((48, 48), Image.Resampling.BOX))).max() <= 8
    with pytest.raises(ValueError, match="interpolation 'cubic'"):
        Preprocess(interpolation="cubic").view(smooth)


def test_grid_thumbnails_of_jpeg_files_are_decoded_reduced_and_look_the_same(tmp_path):
    """A JPEG probe image is decoded at the DCT scale that still gives the view's square twice the tile's pixels
    (1/2 for a 500 x 375 ImageNet-sized file at 80 px tiles, 1/4 at 40 px), and its thumbnail is the full
    decode's within rounding; a PNG, an image smaller than the crop and a loader's image decode in full."""
    from sieve.backends.imagesets import open_image_set
    from sieve.backends.preprocess import Preprocess
    from sieve.report.grids import thumbnail

    gx, gy = np.meshgrid(np.linspace(0, 1, 500), np.linspace(0, 1, 375))
    pixels = np.stack([255 * gx, 255 * gy, 128 + 100 * np.sin(gx * 60) * np.cos(gy * 45)], -1)
    folder = tmp_path / "probe"
    folder.mkdir()
    Image.fromarray(pixels.round().astype(np.uint8)).save(folder / "a.jpg", quality=95)
    Image.fromarray(pixels.round().astype(np.uint8)).save(folder / "b.png")
    Image.fromarray(pixels[:150, :200].round().astype(np.uint8)).save(folder / "c.jpg", quality=95)
    probe = open_image_set("p", {"kind": "imagefolder", "path": str(folder)})
    pre = Preprocess()
    assert pre.draft_size(500, 375, 80) == (244, 183)  # its 328 px square at 160 px or more: 1/2 (250 x 188)
    for tile, scale in ((80, 2), (40, 4)):
        img, full = probe.load_reduced(0, lambda w, h, t=tile: pre.draft_size(w, h, t))
        assert full == (500, 375) and img.size == (500 // scale, -(-375 // scale))
        reduced = thumbnail(probe, pre, 0, tile).astype(int)
        whole = thumbnail(probe, pre, 0, tile, reduced=False).astype(int)
        assert reduced.shape == whole.shape == (tile, tile, 4)
        # within rounding (mean 0.3, max 3 levels here); the square cut one file pixel off gives a mean of 4.8
        assert np.abs(reduced - whole)[..., :3].mean() < 1 and np.abs(reduced - whole).max() <= 8
    for i in (1, 2):  # PNG; a JPEG smaller than the crop (the view needs all of it)
        img, full = probe.load_reduced(i, lambda w, h: pre.draft_size(w, h, 80))
        assert img.size == full
        assert np.array_equal(thumbnail(probe, pre, i, 80), thumbnail(probe, pre, i, 80, reduced=False))


def test_heat_overlay_is_the_documented_blend():
    """overlay(): grey * 0.55 * (1 - alpha) + ramp colour * alpha, alpha = 0.25 + 0.75 q, per pixel, within one
    level of rounding; RGB and RGBX images give the same pixels."""
    from sieve.report.grids import HEAT_LUT, overlay

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    heat = rng.random((3, 16, 16)).astype(np.float32)
    heat[0] = 0.0
    heat[1, 0, 0] = 1.0
    got = overlay(images, heat).view(np.uint8).reshape(3, 16, 16, 4)
    assert (got[..., 3] == 255).all()
    rgbx = np.concatenate([images, np.zeros((3, 16, 16, 1), np.uint8)], axis=3)
    assert np.array_equal(overlay(rgbx, heat), overlay(images, heat))
    q = (heat * 255).astype(int)
    alpha = (0.25 + 0.75 * q / 255)[..., None]
    grey = np.asarray(Image.fromarray(images.reshape(48, 16, 3)).convert("L"), dtype=np.float64).reshape(
        3, 16, 16, 1
    )
    want = grey * 0.55 * (1 - alpha) + HEAT_LUT[q] * alpha
    assert np.abs(got[..., :3] - want).max() <= 1.5


def test_heat_maps_are_upsampled_like_the_crop_boxes_and_scaled_per_neuron():
    import torch
    import torch.nn.functional as F

    from sieve.report.grids import heat_tiles, normalized_maps

    m = np.random.default_rng(0).random((3, 7, 5)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(m)[:, None], size=(96, 96), mode="bilinear", align_corners=False)[
        :, 0
    ]
    assert np.abs(heat_tiles(m, 96) - ref.numpy()).max() < 1e-5
    n = normalized_maps(np.array([[[2.0, -1.0]], [[1.0, 0.0]]]))
    assert n.tolist() == [[[1.0, 0.0]], [[0.5, 0.0]]]  # one scale for the neuron: the second map is weaker
    vit = normalized_maps(np.array([[[-3.0, -1.0]], [[-2.0, -2.0]]]))  # all <= 0: min-max
    assert vit.tolist() == [[[0.0, 1.0]], [[0.5, 0.5]]]
    assert normalized_maps(np.zeros((2, 2, 2))).max() == 0.0


def test_a_degenerate_selection_is_a_warning_above_the_facts(tmp_path):
    """Select's degenerate-selection warning (sieve.select.degenerate_selection) reaches the run's section;
    a useful selection has none."""
    from sieve.select import degenerate_selection, selectivity

    make_results(tmp_path, n_neurons=12, baseline=False, truth=False)
    kw = {"models": ["toy"], "probes": ["pics"], "concept_sets": ["words"]}
    assert "warnings" not in build(tmp_path, **kw)["runs"][0]
    path = tmp_path / "results/toy/pics/select/summary.json"
    summary = json.loads(path.read_text())
    acts = np.random.default_rng(0).uniform(1, 2, (300, 12))
    stats = selectivity(acts)
    summary["degenerate"] = degenerate_selection(stats, np.zeros(12, bool), 10.0)
    path.write_text(json.dumps(summary))
    run = build(tmp_path, **kw)["runs"][0]
    assert run["warnings"] == [summary["degenerate"]["message"]]
    assert run["warnings"][0].startswith("degenerate selection: no neuron of 12 selected at tau 10; tau ")


def test_grids_drawn_by_threads_are_the_files_of_one_thread(tmp_path):
    """run_grids' ``num_workers`` threads load the probe images and draw, encode and write the grids: the files are
    byte for byte those of the job's own thread, and a neuron whose grid cannot be drawn stops the job."""
    import h5py

    from sieve.backends.imagesets import open_image_set
    from sieve.report.grids import run_grids

    clusters = tmp_path / "clusters"
    clusters.mkdir()
    for neuron in range(7):
        crops = [
            {
                "rank": r,
                "probe_index": (3 * neuron + 2 * r) % 12,
                "box": [8, 8, 40, 40],
                "activation": 1 - r / 10,
            }
            for r in range(5)
        ]
        groups = [
            {"cluster": 0, "members": [0, 1, 2], "size": 3},
            {"cluster": 1, "members": [3, 4], "size": 2},
        ]
        doc = {"neuron": neuron, "k": 2, "crops": crops, "dropped": [], "clusters": groups}
        (clusters / f"{neuron}.json").write_text(json.dumps(doc))
    with h5py.File(tmp_path / "crops.h5", "w") as f:
        f.attrs["preprocess"] = json.dumps({"input_size": 64, "resize": 64})
    with h5py.File(tmp_path / "activations.h5", "w") as f:
        f["topk/maps"] = np.random.default_rng(0).random((7, 5, 4, 4)).astype(np.float16)
    probe = open_image_set("pics", {"kind": "synthetic", "n_images": 12, "seed": 0})

    def grids(workers: int, out: str) -> dict[str, bytes]:
        n = run_grids(
            str(clusters),
            str(tmp_path / "crops.h5"),
            probe,
            str(tmp_path / out),
            tile=32,
            num_workers=workers,
            activations_h5=str(tmp_path / "activations.h5"),
        )
        assert n == 7
        return {p.name: p.read_bytes() for p in sorted((tmp_path / out).iterdir())}

    one = grids(0, "one")
    assert sorted(one) == [f"{n}.jpg" for n in range(7)]
    assert grids(3, "three") == one
    bad = json.loads((clusters / "4.json").read_text())
    bad["clusters"][0]["members"] = [0, 1, 9]  # no crop 9
    (clusters / "4.json").write_text(json.dumps(bad))
    with pytest.raises(IndexError):
        grids(3, "bad")
