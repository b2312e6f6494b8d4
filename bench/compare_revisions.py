"""Bench: the whole shard's share of its generate-only rate, at two revisions of sieve, interleaved.

    python bench/compare_revisions.py --before a85afe2 --out bench/results/shard_share_revisions.json
    python bench/compare_revisions.py --before a85afe2 --out ... -- --images 80 --images-per-concept 20

A change to the shard's file writes shows in ``bench_generate.py``'s ``shard_share_of_generate_only_median`` (the
whole shard's time against its own generate calls), a ratio that the machine's load moves from run to run. So
the two revisions run alternately: ``--before`` (checked out into a temporary git worktree) and this checkout,
each as its own ``bench_generate.py`` process (its own code, its own warm-up), ``--rounds`` times, and the record
keeps every process's figures and, per side, the minimum and the median. Arguments after ``--`` go to
``bench_generate.py`` (its ``--out`` is set here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from timing import MIN_ROUNDS  # noqa: E402


def git(*args: str, check: bool = True) -> str:
    """``git args`` in this checkout: its standard output, stripped."""
    return subprocess.run(
        ["git", *args], cwd=REPO, check=check, capture_output=True, text=True
    ).stdout.strip()


def run_side(root: Path, extra: list[str], out: Path) -> dict[str, Any]:
    """One ``bench_generate.py`` process of the checkout at ``root``: its record (the line it appends to ``out``)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # each side imports its own sieve
    proc = subprocess.run(
        [sys.executable, "bench/bench_generate.py", *extra, "--out", str(out)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench_generate.py failed in {root}:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text(encoding="utf-8").splitlines()[-1])


WORKTREE_PREFIX = "sieve-compare-"


def remove_stale_worktrees() -> None:
    """Remove the worktrees a killed run of this script left registered (their folders under the temporary
    directory, named with :data:`WORKTREE_PREFIX`)."""
    for line in git("worktree", "list", "--porcelain").splitlines():
        path = line.removeprefix("worktree ")
        if line.startswith("worktree ") and Path(path).parent.name.startswith(WORKTREE_PREFIX):
            git("worktree", "remove", "--force", path, check=False)
            shutil.rmtree(Path(path).parent, ignore_errors=True)
    git("worktree", "prune", check=False)


def side_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    share = [r["shard_share_of_generate_only_median"] for r in records]
    seconds = [r["shard"]["seconds_median"] for r in records]
    return {
        "share_of_generate_only": share,
        "share_min": min(share),
        "share_median": round(statistics.median(share), 3),
        "share_max": max(share),
        "shard_seconds_median": seconds,
        "shard_seconds_min": min(seconds),
        "shard_seconds_median_of_runs": round(statistics.median(seconds), 4),
        "load_average_at_start": [r["load_average_at_start"] for r in records],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="git revision to compare this checkout with")
    ap.add_argument("--rounds", type=int, default=MIN_ROUNDS, help="bench_generate.py processes per side")
    ap.add_argument("--note", default="")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "shard_share_revisions.json"))
    ap.add_argument("extra", nargs="*", help="arguments for bench_generate.py (after --)")
    args = ap.parse_args()
    if args.rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    rev = git("rev-parse", "--short", args.before)
    head = git("rev-parse", "--short", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", check=False))
    remove_stale_worktrees()
    tmp = Path(tempfile.mkdtemp(prefix=WORKTREE_PREFIX))
    before_root = tmp / "before"
    git("worktree", "add", "--detach", str(before_root), rev)
    records: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    try:
        for _ in range(args.rounds):
            for side, root in (("before", before_root), ("after", REPO)):
                records[side].append(run_side(root, args.extra, tmp / f"{side}.jsonl"))
    finally:
        git("worktree", "remove", "--force", str(before_root), check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    record = {
        "before_revision": rev,
        "after_revision": head + ("+uncommitted" if dirty else ""),
        "bench_generate_args": args.extra,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        **{side: side_summary(r) for side, r in records.items()},
        "images": records["after"][0]["images"],
        "note": args.note,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(json.dumps(record, indent=2))
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
