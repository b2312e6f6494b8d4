"""The commands users type, as written in README.md, docs/*.md and the example headers, dry-run from a fresh
copy of this checkout (its tracked and untracked, not ignored files) with an empty HOME:

- `snakemake --profile slurm` from the repository root finds the profile (the `slurm` link to profiles/slurm);
- every documented command that runs the workflow (all but --lint, --report and conda's env build) plans
  only what it names: the models, probe sets and concept sets of its config file (an example merged into
  the planted-world default would also plan the synthetic model, its probe set and the stage ablations).

Two things differ from a user's shell, both because this machine cannot do them: `--sdm conda` is dropped
(conda is not installed; tests/test_envs.py checks the environments), and an example's `/path/to/...`
placeholders, which its header tells the user to fill in, point at empty files here.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import REPO, snakemake_cmd, snakemake_env

DOCUMENTS = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    *sorted((REPO / "examples").glob("*.yaml")),
]


def _candidate_lines(path: Path) -> list[str]:
    """Text that can hold a command: markdown code spans and code-block lines; an example's header comments."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".yaml":
        header = [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]
        spans = []
        for line in header:
            spans += re.findall(r"`([^`]*)`", line) or [line]
        return spans
    lines = re.findall(r"`([^`\n]+)`", text)
    lines += [
        line for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S) for line in block.splitlines()
    ]
    return lines


# commands a dry run cannot check: the linter, a report of finished results, conda's own environment build
NOT_A_RUN = ("--lint", "--report", "--conda-create-envs-only")


def documented_commands() -> list[tuple[str, str]]:
    """(where, command) for every `snakemake ...` command that plans a run."""
    found = {}
    for path in DOCUMENTS:
        for line in _candidate_lines(path):
            for m in re.finditer(r"(?:^|&&\s*|:\s*)(snakemake(?:\s[^#`()]*)?)(?=$|[\s#()])", line):
                cmd = m.group(1).strip()
                if not any(flag in cmd.split() for flag in NOT_A_RUN):
                    found.setdefault(cmd, path.relative_to(REPO).as_posix())
    return [(where, cmd) for cmd, where in found.items()]


COMMANDS = documented_commands()


def test_commands_are_found():
    """The extraction finds the commands users copy (a regex that silently found nothing would pass all)."""
    cmds = [c for _, c in COMMANDS]
    assert "snakemake --profile profiles/local [--sdm conda]" in cmds, cmds
    for example in sorted((REPO / "examples").glob("*.yaml")):
        assert any(f"--configfile examples/{example.name}" in c for c in cmds), example.name
    assert any(re.fullmatch(r"snakemake .*--profile slurm\b.*", c) for c in cmds), cmds
    assert not [c for c in cmds if re.search(r"--(profile|configfile|cores)$", c)], "a command was cut short"


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory) -> Path:
    """This checkout's files as a fresh clone has them (no results, no .snakemake), links kept as links."""
    clone = tmp_path_factory.mktemp("clone")
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        src, dst = REPO / rel, clone / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the worktree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(src.readlink())
        else:
            shutil.copy2(src, dst)
    for example in (clone / "examples").glob("*.yaml"):  # the placeholders a user fills in
        text = example.read_text()
        for placeholder in sorted(set(re.findall(r"/path/to/[\w.-]+", text))):
            local = clone / "placeholders" / Path(placeholder).name
            local.parent.mkdir(exist_ok=True)
            local.touch()
            text = text.replace(placeholder, str(local))
        example.write_text(text)
    return clone


def _as_typed(command: str) -> list[str]:
    """The command's arguments, without its optional `[...]` parts and without `--sdm conda`."""
    command = re.sub(r"\[[^\]]*\]", "", command).replace("--sdm conda", "")
    args = shlex.split(command)
    assert args[0] == "snakemake", command
    return args[1:]


def _planned(text: str, key: str) -> set[str]:
    """The values of one wildcard (model, probe, concept_set) over the jobs a dry run plans."""
    return set(re.findall(rf"\b{key}=([^,\s]+)", text))


@pytest.mark.workflow
@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[c for _, c in COMMANDS])
def test_documented_command_plans_only_what_it_names(where, command, fresh_clone, tmp_path):
    args = _as_typed(command)
    env = snakemake_env()
    env["HOME"] = str(tmp_path)  # no profile of the tester's own in ~/.config/snakemake
    env.pop("XDG_CONFIG_HOME", None)
    proc = subprocess.run(
        snakemake_cmd(*args, "--dry-run"),
        cwd=fresh_clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{where}: `{command}` fails:\n{text[-4000:]}"
    config_file = args[args.index("--configfile") + 1] if "--configfile" in args else "config.yaml"
    config = yaml.safe_load((fresh_clone / config_file).read_text())
    assert _planned(text, "model") <= set(config["models"]), f"{where}: `{command}`"
    assert _planned(text, "probe") <= set(config["probes"]), f"{where}: `{command}`"
    assert _planned(text, "concept_set") <= set(config["concept_sets"]), f"{where}: `{command}`"
    if "prefetch" not in args:
        assert _planned(text, "model") == set(config["models"]), f"{where}: `{command}` plans no probe"
    if not any(m.get("source") == "synthetic" for m in config["models"].values()):
        # nothing of config.yaml merged in: no planted truth, no stage ablations it did not ask for
        assert "rule truth" not in text, f"{where}: `{command}`"
        if not (config.get("evaluate") or {}).get("stage_ablations"):
            assert "stage_ablation" not in text, f"{where}: `{command}`"
