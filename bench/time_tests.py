"""Time a tier of the test suite and record it, so that the README's figure comes from a file.

    python bench/time_tests.py                      # the fast tier: pytest -m "not workflow"
    python bench/time_tests.py --marker "workflow and not slurm" --name workflow
    python bench/time_tests.py --marker "" --name full   # the whole suite, as .ci/run runs it

Writes ``bench/results/test_tiers.json`` (one entry per tier name, replaced on each run): the pytest command,
the counts from pytest's closing line, the wall time, the machine's cores and load average at the start and the
end (other work on a shared machine slows every test), the slowest tests (pytest's ``--durations``: where the
time goes, setup lines being shared fixtures such as the default run), a free-text note, and the date.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--marker", default="not workflow", help='pytest -m expression ("" for every test)')
    ap.add_argument("--name", default="fast")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "test_tiers.json"))
    ap.add_argument("--durations", type=int, default=15, help="how many of the slowest tests to record")
    ap.add_argument("--note", default="", help="e.g. what else ran on the machine")
    args = ap.parse_args()
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--durations={args.durations}",
    ] + (["-m", args.marker] if args.marker else [])
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    load_end = os.getloadavg()[0]
    closing = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    slowest = re.findall(r"^([\d.]+)s (setup|call|teardown) +(.+?)\s*$", proc.stdout, re.M)  # ids hold spaces
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?)", closing)}
    entry = {
        "command": "python -m pytest -q" + (f' -m "{args.marker}"' if args.marker else ""),
        "returncode": proc.returncode,
        "counts": counts,
        "closing_line": closing,
        "wall_seconds": round(seconds, 1),
        "cores": os.cpu_count(),
        "load_average_at_start": round(load, 2),
        "load_average_at_end": round(load_end, 2),
        "slowest": [f"{float(sec):.1f}s {when} {test}" for sec, when, test in slowest],
        "note": args.note,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.is_file() else {}
    data[args.name] = entry
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(entry, indent=2))
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
