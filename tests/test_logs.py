"""A rule's log reads top to bottom: log records and progress bars share one stream (sieve.io.LineStream), a
bar's redraws become lines of their own, and the bar's final state is in the file."""

from __future__ import annotations

import io
import logging
import re

import pytest

from helpers import make_image_folder, run_snakemake, tiny_config
from sieve.io import LineStream, script_logging

RECORD = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def test_carriage_returns_become_new_lines():
    out = io.StringIO()
    s = LineStream(out)
    s.write("\rbar  10%|#    |    ")
    s.write("\rbar 100%|#####|\n")
    s.write("12:00:00 INFO x: done\n")
    s.write("\rsecond 50%")
    s.write("\r")
    s.write("\rsecond 100%\n")
    s.write("\rthird 0%")
    s.start_line()  # a log record comes
    s.write("12:00:01 WARNING x: skipped\n")
    assert out.getvalue() == (
        "bar  10%|#    |\nbar 100%|#####|\n12:00:00 INFO x: done\nsecond 50%\nsecond 100%\n"
        "third 0%\n12:00:01 WARNING x: skipped\n"
    )


def test_records_and_a_bar_share_the_log(tmp_path):
    """The records are not overwritten by the bar (the log file was once opened twice: for the records and,
    appending, for stderr), and the bar ends in its final state."""
    from tqdm import tqdm

    log_file = tmp_path / "logs" / "job.log"
    with script_logging(log_file) as logger:
        logger.info("starting")
        bar = tqdm(total=3, desc="items", unit="img", mininterval=0)
        for _ in range(3):
            bar.update(1)
            logging.getLogger("sieve.test").info("one item")
        bar.close()
        logger.info("finished")
    text = log_file.read_text()
    assert "\r" not in text
    lines = text.splitlines()
    assert RECORD.match(lines[0]) and lines[0].endswith("starting")
    assert RECORD.match(lines[-1]) and lines[-1].endswith("finished")
    assert [line for line in lines if line.endswith("one item")] and all(
        RECORD.match(line) or line.startswith("items:") for line in lines
    ), text
    assert any(re.match(r"items: 100%.*\| 3/3 ", line) for line in lines), text


@pytest.mark.workflow
def test_a_real_probe_log_reads_top_to_bottom(tmp_path):
    """A real job's log (probe_activations, whose bar counts images) holds its records whole, one bar state
    per line and the bar's final 100% state."""
    images = make_image_folder(tmp_path / "images", n_per_class=6, corrupt=1)
    (tmp_path / "words.txt").write_text("cat\ndog\n")
    run_snakemake(
        tmp_path / "work", tiny_config(images, tmp_path / "words.txt"), extra=("--until", "probe_activations")
    )
    (log_file,) = (tmp_path / "work" / "logs").rglob("probe_activations.log")
    text = log_file.read_text()
    assert "\r" not in text, text
    lines = text.splitlines()
    bar = [line for line in lines if re.fullmatch(r"probe tiny/pics: +\d+%\|.*\| \d+/13 \[.*\]", line)]
    records = [line for line in lines if RECORD.match(line)]
    assert records and bar and len(records) + len(bar) == len(lines), text
    assert re.match(r"probe tiny/pics: 100%.*\| 13/13 ", bar[-1]), bar
    assert any("12 images, 1 skipped" in r for r in records), records  # the summary after the bar, whole
    assert any(re.search(r"WARNING sieve.probe: skipped unreadable image .*broken0.jpg", r) for r in records)
