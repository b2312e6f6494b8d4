"""Regenerate the lock files and the pip sections of envs/gpu.yaml and envs/cpu.yaml (needs uv and PyPI).

    pip install uv && python envs/update_locks.py

1. ``uv pip compile envs/requirements.in`` for Python 3.11 on x86_64 Linux writes envs/gpu.lock.txt: every
   package the jobs' environments install, transitive ones included, with the reason it is there (``# via``).
2. envs/cpu.lock.txt is derived from it: the same pins, PyTorch's CPU-only wheels (``+cpu``, from PyTorch's
   own index) and without the CUDA libraries that only the CUDA wheels require (``nvidia-*``, ``cuda-*``,
   ``triton``). It is derived rather than resolved because the CPU wheels live on download.pytorch.org, which
   uv would have to reach too; the two locks then differ only where they must.
3. The pip section of each env file is rewritten to list its lock's pins, inline: conda writes an env file's
   pip section to a requirements file in the folder of the copy Snakemake makes (``.snakemake/conda/``) and
   runs pip there, so a relative path (``-r``, ``-e ../``) would point into ``.snakemake/``, not this folder.

tests/test_envs.py checks that the locks, requirements.in, pyproject.toml and the env files agree.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ENVS = Path(__file__).resolve().parent
REPO = ENVS.parent
REQUIREMENTS_IN = "envs/requirements.in"
PYTHON_VERSION = "3.11"
PLATFORM = "x86_64-manylinux_2_28"
COMPILE_COMMAND = "python envs/update_locks.py"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# what PyTorch's CUDA wheels require and its CPU wheels do not (their dependencies go with them)
CUDA_ONLY = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")
CPU_LOCAL = {"torch", "torchvision"}  # the packages whose CPU build is a +cpu local version


@dataclass
class Pin:
    """One package of a uv lock: name==version and the packages (or ``-r file``) that require it."""

    name: str
    version: str
    via: list[str] = field(default_factory=list)


def read_lock(text: str) -> tuple[list[str], dict[str, Pin]]:
    """A uv ``pip compile`` output: its header comment lines and its pins, by name."""
    header, pins, current = [], {}, None
    for line in text.splitlines():
        if m := re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line):
            current = pins[m.group(1)] = Pin(m.group(1), m.group(2))
        elif current is None:
            header.append(line)
        elif m := re.fullmatch(r"\s+#\s+(?:via\s+)?(\S.*)", line):
            if m.group(1) != "via":
                current.via.append(m.group(1).strip())
    return header, pins


def write_lock(header: list[str], pins: dict[str, Pin]) -> str:
    """The lock text in uv's layout (one via on the pin's line below it, several as a list)."""
    lines = list(header)
    for pin in pins.values():
        lines.append(f"{pin.name}=={pin.version}")
        if len(pin.via) == 1:
            lines.append(f"    # via {pin.via[0]}")
        elif pin.via:
            lines.append("    # via")
            lines += [f"    #   {v}" for v in pin.via]
    return "\n".join(lines) + "\n"


def derive_cpu_lock(gpu_text: str) -> str:
    """envs/cpu.lock.txt from envs/gpu.lock.txt: CUDA-only packages (and what only they need) dropped,
    torch and torchvision as their +cpu builds."""
    _, pins = read_lock(gpu_text)
    dropped = {n for n in pins if CUDA_ONLY.match(n)}
    changed = True
    while changed:  # a package required only by dropped ones goes too
        changed = False
        for name, pin in pins.items():
            if name not in dropped and pin.via and all(v in dropped for v in pin.via):
                dropped.add(name)
                changed = True
    cpu = {}
    for name, pin in pins.items():
        if name in dropped:
            continue
        version = f"{pin.version}+cpu" if name in CPU_LOCAL else pin.version
        cpu[name] = Pin(name, version, [v for v in pin.via if v not in dropped])
    cpu_header = [
        "# Derived from envs/gpu.lock.txt by `python envs/update_locks.py`: the same pins, PyTorch's CPU-only",
        f"# wheels (from {CPU_INDEX}) and none of the CUDA libraries only the CUDA wheels need.",
    ]
    return write_lock(cpu_header, cpu)


def env_pip_lines(lock_text: str, kind: str) -> list[str]:
    """The pip section of envs/<kind>.yaml: every pin of its lock (plus PyTorch's CPU index for cpu)."""
    _, pins = read_lock(lock_text)
    lines = [f"--extra-index-url {CPU_INDEX}"] if kind == "cpu" else []
    return lines + [f"{p.name}=={p.version}" for p in pins.values()]


def write_env(path: Path, lock_text: str, kind: str) -> None:
    """Replace the pip section of an env file (its comments and conda part stay)."""
    text = path.read_text()
    head, sep, _ = text.partition("  - pip:\n")
    if not sep:
        raise SystemExit(f"{path}: no `  - pip:` section to rewrite")
    body = "".join(f"      - {line}\n" for line in env_pip_lines(lock_text, kind))
    path.write_text(head + sep + body)


def main() -> None:
    out = subprocess.run(
        [
            "uv",
            "pip",
            "compile",
            REQUIREMENTS_IN,
            "--python-version",
            PYTHON_VERSION,
            "--python-platform",
            PLATFORM,
            "--custom-compile-command",
            COMPILE_COMMAND,
            "--quiet",
            "--output-file",
            "envs/gpu.lock.txt",
        ],
        cwd=REPO,
        check=False,
    )
    if out.returncode != 0:
        sys.exit(out.returncode)
    gpu = (ENVS / "gpu.lock.txt").read_text()
    cpu = derive_cpu_lock(gpu)
    (ENVS / "cpu.lock.txt").write_text(cpu)
    write_env(ENVS / "gpu.yaml", gpu, "gpu")
    write_env(ENVS / "cpu.yaml", cpu, "cpu")


if __name__ == "__main__":
    main()
