"""The front page and the reference in docs/ keep pointing at things that exist: every relative link (and its
#anchor) resolves, every cited test file and test function exists, and the README stays a front page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import REPO

DOCS = [REPO / "README.md", REPO / "bench" / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _anchors(md: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file (lower case, punctuation dropped, spaces as dashes)."""
    return {
        re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        for m in re.finditer(r"^#+ (.*)$", md.read_text(encoding="utf-8"), re.M)
    }


def _problems(md: Path, root: Path = REPO) -> list[str]:
    text = md.read_text(encoding="utf-8")
    where = md.relative_to(root)
    problems = []
    for m in re.finditer(r"\]\(([^)\s]+)\)", text):
        link = m.group(1)
        if re.match(r"[a-z]+:", link):  # http(s):, mailto:
            continue
        path, _, anchor = link.partition("#")
        target = (md.parent / path).resolve() if path else md.resolve()
        if not target.exists():
            problems.append(f"{where}: link to a missing file: {link}")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            problems.append(f"{where}: link to a missing heading: {link}")
    for m in re.finditer(r"(tests/[\w/]+\.py)(?:::(\w+))?", text):
        test_file, func = root / m.group(1), m.group(2)
        if not test_file.is_file():
            problems.append(f"{where}: cites a missing test file: {m.group(1)}")
        elif func and not re.search(rf"def {func}\b", test_file.read_text(encoding="utf-8")):
            problems.append(f"{where}: cites a missing test: {m.group(0)}")
    return problems


@pytest.mark.parametrize("md", DOCS, ids=[str(p.relative_to(REPO)) for p in DOCS])
def test_links_and_cited_tests_exist(md: Path) -> None:
    assert _problems(md) == []


def test_readme_is_a_front_page() -> None:
    """The reference lives in docs/; the README says what sieve is and links there (issue 11: ~150 lines)."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 180
    assert any("docs/" in line for line in lines)


def test_a_broken_link_is_reported(tmp_path: Path) -> None:
    """The checker itself finds a missing file, a missing heading and a missing test, and passes good ones."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("def test_there():\n    pass\n")
    (tmp_path / "docs" / "outputs.md").write_text("# Files\n")
    md = tmp_path / "docs" / "page.md"
    md.write_text(
        "[a](nowhere.md) [b](outputs.md#no-such-heading) `tests/test_x.py::test_nothing_here`\n"
        "[ok](outputs.md#files) `tests/test_x.py::test_there` [web](https://example.org)\n"
    )
    found = _problems(md, root=tmp_path)
    assert len(found) == 3, found


def test_readme_select_table_and_figures_are_the_bench_results() -> None:
    """The README's Select table is bench/trained_select.py's rendering of its results file, cell for cell, and
    the figures of the sentence under it are that file's (issue 16: the default is chosen on these)."""
    import json
    import sys

    sys.path.insert(0, str(REPO / "bench"))
    from trained_select import markdown_table

    result = json.loads((REPO / "bench/results/trained_select.json").read_text(encoding="utf-8"))
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert markdown_table(result) in readme
    m = re.search(
        r"`exp` keeps most class neurons of learned classes on both final layers \((\d+) of (\d+) and "
        r"(\d+) of (\d+) at tau\s+10; at\s+tau 4 and 6 all (\d+) ResNet logits, a degenerate selection\) and "
        r"is the only treatment that selects a\s+non-degenerate set on all three signed layers at tau 8 to 12",
        readme,
    )
    assert m, "README: the sentence under the Select table changed; update tests/test_docs.py"
    quoted = [int(g) for g in m.groups()]
    measured = []
    for name in ("resnet", "vit"):
        final = result["models"][name]["layers"]["final"]
        measured += [
            final["exp"]["by_tau"]["10"]["learned_class_neurons_selected"],
            final["n_learned_classes"],
        ]
    resnet_fc = result["models"]["resnet"]["layers"]["final"]
    assert [resnet_fc["exp"]["by_tau"][t]["selected"] for t in ("4", "6")] == [resnet_fc["n_neurons"]] * 2
    assert quoted == [*measured, resnet_fc["n_neurons"]]
    # "the only treatment with a non-degenerate selection on every signed layer at tau 8 to 12"
    signed = [layer for e in result["models"].values() for layer in e["layers"].values() if layer["min"] < 0]
    assert len(signed) == 3
    for treatment in ("exp", "clip", "shift", "raw"):
        useful = all(
            0 < layer[treatment]["by_tau"][t]["selected"] < layer["n_neurons"]
            for layer in signed
            for t in ("8", "10", "12")
        )
        assert useful == (treatment == "exp"), treatment
    # ... nor do the rejected candidates: each is degenerate on some signed layer at some tau from 8 to 12
    for candidate in ("robust_z_mad", "softmax_probabilities"):
        rows = [
            (layer["alternatives"][candidate][t]["selected"], layer["n_neurons"])
            for layer in signed
            if candidate in layer["alternatives"]
            for t in ("8", "10", "12")
        ]
        assert rows and not all(0 < n < total for n, total in rows), candidate
    m = re.search(
        r"centred logits keep (\d+) of (\d+) and (\d+) of (\d+) learned class neurons at tau 10", readme
    )
    assert m, "README: the sentence on the rejected candidates changed; update tests/test_docs.py"
    centred = [
        (
            f["alternatives"]["centred_logits_raw"]["10"]["learned_class_neurons_selected"],
            f["n_learned_classes"],
        )
        for f in (result["models"][n]["layers"]["final"] for n in ("resnet", "vit"))
    ]
    assert [int(g) for g in m.groups()] == [x for pair in centred for x in pair]


def test_bf16_figures_are_the_bench_results() -> None:
    """docs/configuration.md's bf16 trade-off quotes bench/results/bf16_fidelity.json."""
    import json

    result = json.loads((REPO / "bench/results/bf16_fidelity.json").read_text(encoding="utf-8"))
    text = re.sub(r"\s+", " ", (REPO / "docs/configuration.md").read_text(encoding="utf-8"))
    m = re.search(
        r"changed the top-1% image set of (\d+) of (\d+) ResNet and (\d+) of (\d+) ViT neurons and the "
        r"CLIP-Dissect label of (\d+) of (\d+) and (\d+) of (\d+), and no Select decision at tau 10",
        text,
    )
    assert m, "docs/configuration.md: the bf16 sentence changed; update tests/test_docs.py"
    res, vit = (result["layers"][f"trained {n} (penultimate)"] for n in ("resnet", "vit"))
    assert [int(g) for g in m.groups()] == [
        res["top1pct_changed"],
        res["n_neurons"],
        vit["top1pct_changed"],
        vit["n_neurons"],
        res["clip_dissect_labels_changed"],
        res["n_neurons"],
        vit["clip_dissect_labels_changed"],
        vit["n_neurons"],
    ]
    assert res["selection_changed"] == vit["selection_changed"] == 0


def test_decode_figures_are_the_bench_results() -> None:
    """bench/README.md's decode table and docs/configuration.md's cost per image quote
    bench/results/probe_decode_cpu.json."""
    import json

    result = json.loads((REPO / "bench/results/probe_decode_cpu.json").read_text(encoding="utf-8"))
    host, dev = result["host"], result["device"]
    bench = re.sub(r"\s+", " ", (REPO / "bench/README.md").read_text(encoding="utf-8"))
    for label, side in (("host (Pillow)", host), ("device path on the CPU", dev)):
        row = f"| {label} | {side['per_s_max']} | {side['per_s_median']} | "
        assert row + f"{side['ms_per_image_min']} / {side['ms_per_image_median']} |" in bench, label
    sp = result["device_speedup"]
    assert f"{sp['from_min']}x from the best rounds, {sp['from_median']}x from the medians" in bench
    assert f"{host['ms_per_image_min']} to {host['ms_per_image_median']} ms of a core per image" in bench
    assert f"differ by at most {result['pooled_max_abs_diff']:.2g}" in bench
    assert f"load average {result['load_average_at_start']} at the start" in bench
    config = re.sub(r"\s+", " ", (REPO / "docs/configuration.md").read_text(encoding="utf-8"))
    quoted = f"{host['ms_per_image_min']:.1f} to {host['ms_per_image_median']:.1f} ms"
    assert f"one 500 x 375 JPEG on the host took a CPU core {quoted}" in config
    assert f"at load average {result['load_average_at_start']}:" in config


def test_readme_quotes_the_recorded_test_times() -> None:
    """The README's test-suite times are bench/results/test_tiers.json's (made by bench/time_tests.py): each
    "the NAME tier ... ran N tests in S s on C cores ... (load average L" matches the file's NAME entry."""
    tiers = json.loads((REPO / "bench" / "results" / "test_tiers.json").read_text(encoding="utf-8"))
    text = re.sub(r"\s+", " ", (REPO / "README.md").read_text(encoding="utf-8"))
    quoted = re.findall(
        r"the (\w+) tier[^.]*? ran (\d+) tests in (\d+) s on (\d+) cores[^(]*\(load average ([\d.]+)", text
    )
    assert "fast" in {name for name, *_ in quoted}, "README.md: the fast tier's time is not quoted"
    for name, n, seconds, cores, load in quoted:
        entry = tiers[name]
        assert int(n) == entry["counts"]["passed"], f"README.md, {name} tier: {n} tests"
        assert int(seconds) == round(entry["wall_seconds"]), f"README.md, {name} tier: {seconds} s"
        assert int(cores) == entry["cores"], f"README.md, {name} tier: {cores} cores"
        assert float(load) == entry["load_average_at_start"], f"README.md, {name} tier: load average {load}"


def test_crop_bench_table_is_the_bench_results() -> None:
    """bench/README.md's crop table quotes bench/results/crops_cpu*.json (bench/bench_crops.py), cell for cell."""
    text = (REPO / "bench/README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| \[`(crops_cpu\w*\.json)`\]\(results/\1\), (\d+) rounds \| (.*) \|$", text, re.M)
    assert len(rows) == 2, "bench/README.md: the crop table changed; update tests/test_docs.py"
    for name, rounds, cells in rows:
        r = json.loads((REPO / "bench/results" / name).read_text(encoding="utf-8"))
        e, b = r["embed"], r["boxes"]

        def pair(d: dict) -> str:
            return f"{d['per_s_max']} / {d['per_s_median']}"

        want = [
            str(r["load_average_at_start"]),
            pair(e["host"]),
            pair(e["device"]),
            f"{e['speedup_device_vs_host']['from_min']}x / {e['speedup_device_vs_host']['from_median']}x",
            *(str(b[k]["ms_per_crop_min"]) for k in ("before", "after_1_thread", "after_threads")),
        ]
        assert int(rounds) == r["rounds"] and cells.split(" | ") == want


def test_cpu_stage_and_import_figures_are_the_bench_results() -> None:
    """bench/README.md's per-neuron grid table, its job, Hypothesize and import-share figures quote
    bench/results/cpu_stages.json (bench/bench_cpu_stages.py) and import_share.json (bench/import_share.py)."""
    text = re.sub(r"\s+", " ", (REPO / "bench/README.md").read_text(encoding="utf-8"))
    stages = json.loads((REPO / "bench/results/cpu_stages.json").read_text(encoding="utf-8"))
    g, hyp = stages["grids"], stages["hypothesize"]
    rows = {
        "before: drawing": ("before_draw", False),
        "before: drawing + JPEG, quality 90": ("before_draw_jpeg", True),
        "now: drawing": ("draw", False),
        "now: drawing + JPEG, quality 90": ("draw_jpeg", True),
        "JPEG, quality 90, of a drawn grid": ("jpeg_q90", True),
        "PNG, zlib level 1, of a drawn grid": ("png_level1", True),
        "PNG, `optimize=True`, of a drawn grid": ("png_optimize", True),
    }
    for label, (key, has_bytes) in rows.items():
        s = g[key]
        cells = [s["ms_per_neuron_min"], s["ms_per_neuron_median"], s["cpu_ms_per_neuron_median"]]
        row = (
            f"| {label} | " + " | ".join(map(str, cells)) + f" | {s['bytes_per_grid'] if has_bytes else ''} |"
        )
        assert row.replace("|  |", "| |") in text, label
    dj, job = g["draw_jpeg"], g["job"]
    assert (
        f"costs {dj['ms_per_neuron_min']} ms at best and {dj['ms_per_neuron_median']} ms in the median"
        in text
    )
    assert f"({g['speedup_draw_jpeg_vs_before']['from_min']} times faster than before" in text
    assert f"load average {stages['load_average_at_start']} at the start" in text
    run, x20 = job["run"], job["x20"]
    assert (
        f"{run['ms_per_neuron_min']} / {run['ms_per_neuron_median']} ms per neuron on the run's {run['neurons']} "
        f"neurons and {x20['ms_per_neuron_min']} / {x20['ms_per_neuron_median']} ms on {x20['neurons']}"
    ) in text
    jpeg = job["jpeg"]
    jf, jr = jpeg["full"], jpeg["reduced"]
    assert (
        f"draws the same {jr['neurons']} grids from a folder of {jpeg['images']} JPEG files" in text
        and f"all {jpeg['images_loaded']} loaded" in text
    )
    assert (
        f"{jf['ms_per_neuron_min']} / {jf['ms_per_neuron_median']} ms per neuron decoding each file in full, "
        f"{jr['ms_per_neuron_min']} / {jr['ms_per_neuron_median']} ms decoding it at the DCT scale"
    ) in text
    assert f"{jpeg['speedup_reduced_vs_full']['from_min']} times faster from the best rounds" in text
    assert f"{jr['ms_per_image_min']} / {jr['ms_per_image_median']} ms, `ms_per_image_min`" in text
    j2, s2 = jpeg["reduced_2_threads"], jpeg["speedup_2_threads_vs_1"]
    assert (
        f"(`reduced_2_threads`): {j2['ms_per_neuron_min']} / {j2['ms_per_neuron_median']} ms per neuron "
        f"({s2['from_min']} / {s2['from_median']} times the one thread's rate; {j2['cpu_ms_per_neuron_median']} ms "
        "of CPU per neuron"
    ) in text
    full, part = hyp["full_sort"], hyp["partition"]
    assert f"{hyp['neurons']} neurons and {hyp['clusters']} clusters" in text
    assert f"{full['seconds_min']} / {full['seconds_median']} s with a full sort" in text
    assert (
        f"{part['seconds_min']} / {part['seconds_median']} s with the partition" in text
        and hyp["outputs_identical"]
    )
    imp = json.loads((REPO / "bench/results/import_share.json").read_text(encoding="utf-8"))
    assert (
        f"{imp['import_seconds']} s of the {imp['job_wall_seconds']} s of job time was spent importing "
        f"(`import_share_of_job_time` {imp['import_share_of_job_time']};"
    ) in text
    assert f"{imp['jobs_importing_torch']} of its {imp['jobs']} jobs import torch" in text
    assert f"{imp['torch_import_seconds']} s of the import time is theirs" in text


def test_shard_share_figures_are_the_bench_results() -> None:
    """bench/README.md's generate rows after the cache wrote from memory, its revision comparison and its
    shard-phase figures quote generate.jsonl's last two lines (bench/bench_generate.py),
    shard_share_revisions*.json (bench/compare_revisions.py) and shard_phases_cpu.json (bench/shard_phases.py)."""
    text = re.sub(r"\s+", " ", (REPO / "bench/README.md").read_text(encoding="utf-8"))
    lines = (REPO / "bench/results/generate.jsonl").read_text(encoding="utf-8").splitlines()
    for d in (json.loads(line) for line in lines[-2:]):
        row = (
            f"| `{d['pipeline']}` | writes from memory, quiet | {d['load_average_at_start']} | "
            f"{d['loop']['per_s_max']} / {d['loop']['per_s_median']} | {d['shard']['per_s_max']} / "
            f"{d['shard']['per_s_median']} | {d['shard_generate_only_images_per_s_median']} | "
            f"{d['shard_share_of_generate_only_median']} |"
        )
        assert row in text, row
    for name, processes in (("shard_share_revisions.json", 6), ("shard_share_revisions_20.json", 5)):
        rv = json.loads((REPO / "bench/results" / name).read_text(encoding="utf-8"))
        cells = [str(rv["rounds"])]
        cells += [f"{rv[k]['share_min']} / {rv[k]['share_median']}" for k in ("before", "after")]
        cells += [
            f"{rv[k]['shard_seconds_min']} / {rv[k]['shard_seconds_median_of_runs']} s"
            for k in ("before", "after")
        ]
        assert f"(results/{name})) | " + " | ".join(cells) + " |" in text, name
        assert rv["rounds"] == processes and rv["before_revision"] == "a85afe2"
        assert f"| before ({rv['before_revision']}) |" in text
    ph = json.loads((REPO / "bench/results/shard_phases_cpu.json").read_text(encoding="utf-8"))
    for figure in (
        f"{ph['seconds_per_run']} s per run, of which generation {ph['generate_seconds_per_run']} s "
        f"(`generate_share` {ph['generate_share']}), measuring {ph['measure']} s",
        f"waiting for the writer thread {ph['main_waits_for_writer']} s",
        f"own work is {ph['writer_seconds_per_run']} s (thumbnail files {ph['writer_thumbnail_files']} s",
        f"prompt and activations {ph['writer_concept_files']} s), {ph['writer_cpu_seconds_per_run']} s of it CPU",
        f"A thumbnail file costs {ph['thumbnail_file_in_shard_ms']} ms in the shard and "
        f"{ph['thumbnail_file_alone_ms']} ms written alone",
        f"one folder: {ph['mkdir_ms']} ms, `mkdir_ms`",
        f"(about {round(ph['seconds_per_run'] - ph['generate_and_measure'], 4)} s)",
        f"costs {round(ph['generate_seconds_per_run'] / ph['images_per_run'] * 1000, 2)} ms to generate here",
    ):
        assert figure in text, figure
