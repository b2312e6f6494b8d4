"""How much of a run's job time is spent importing Python modules, and which jobs import torch.

    rm -rf results logs benchmarks .snakemake
    PYTHONPROFILEIMPORTTIME=1 snakemake --cores 1 2> /tmp/run.log
    python bench/import_share.py /tmp/run.log --out bench/results/import_share.json

With ``PYTHONPROFILEIMPORTTIME=1`` every Python process (Snakemake and each job's script) writes one line per
import to stderr (``python -X importtime``), starting with its own header line. With ``--cores 1`` the jobs run
one after another, so each process's lines follow the ``rule``/``localrule``/``checkpoint`` block Snakemake
printed for it, and the job's wall time is the difference of the time stamps Snakemake prints before the job
starts and when it finishes (1 s resolution, so a job's own figure is rough; the sums over a run are not).

A process's import time is the sum of the cumulative times of its top-level imports. The first process
(Snakemake itself) is not a job and is left out.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

HEADER = "import time: self [us] | cumulative | imported package"
LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)\s*$")
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
JOB = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
FINISHED = re.compile(r"^Finished jobid: \d+ \(Rule: (\w+)\)")


def parse(log: str) -> dict[str, Any]:
    """Per job (in run order): rule, import seconds, whether torch was imported, wall seconds."""
    jobs: list[dict[str, Any]] = []
    open_jobs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    stamp: datetime | None = None
    current: dict[str, Any] | None = None  # the job whose process lines come now
    in_snakemake = True
    for raw in log.splitlines():
        line = raw.rstrip("\n")
        if m := STAMP.match(line.strip()):
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            continue
        if m := JOB.match(line.strip()):
            current = {"rule": m.group(1), "start": stamp, "import_s": 0.0, "torch": False, "processes": 0}
            jobs.append(current)
            open_jobs[m.group(1)].append(current)
            continue
        if m := FINISHED.match(line.strip()):
            if open_jobs[m.group(1)]:
                open_jobs[m.group(1)].pop(0)["end"] = stamp
            continue
        if line.startswith(HEADER):
            if current is None:
                continue  # Snakemake's own process
            in_snakemake = False
            current["processes"] += 1
            continue
        if (m := LINE.match(line)) and current is not None and not in_snakemake:
            if m.group(3) == "":
                current["import_s"] += int(m.group(2)) / 1e6
            if m.group(4) == "torch":
                current["torch"] = True
    out = []
    for j in jobs:
        if j["processes"] == 0:
            continue  # a job without a Python process of its own (the target rule ``all``)
        wall = (j["end"] - j["start"]).total_seconds() if j.get("end") and j["start"] else None
        out.append(
            {"rule": j["rule"], "import_s": round(j["import_s"], 3), "torch": j["torch"], "wall_s": wall}
        )
    return {"jobs": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", help="stderr of `PYTHONPROFILEIMPORTTIME=1 snakemake --cores 1`")
    ap.add_argument("--note", default="")
    ap.add_argument("--out", default="bench/results/import_share.json")
    args = ap.parse_args()
    res = parse(Path(args.log).read_text(encoding="utf-8", errors="replace"))
    jobs = res["jobs"]
    timed = [j for j in jobs if j["wall_s"] is not None]
    imp, wall = sum(j["import_s"] for j in timed), sum(j["wall_s"] for j in timed)
    torch_jobs = [j for j in jobs if j["torch"]]
    record = {
        "jobs": len(jobs),
        "jobs_importing_torch": len(torch_jobs),
        "rules_importing_torch": sorted({j["rule"] for j in torch_jobs}),
        "import_seconds": round(imp, 2),
        "job_wall_seconds": round(wall, 1),
        "import_share_of_job_time": round(imp / wall, 3) if wall else None,
        "torch_import_seconds": round(sum(j["import_s"] for j in torch_jobs), 2),
        "note": args.note,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "per_job": jobs,
    }
    print(json.dumps({k: v for k, v in record.items() if k != "per_job"}, indent=2))
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
