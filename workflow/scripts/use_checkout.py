"""Imported first by every script: put this checkout's workflow/ folder first on ``sys.path``.

A job must run the sieve package of the workflow being run, never another copy that its environment has
installed (an older clone's ``pip install -e``, a conda env, a container image). Snakemake's script preamble
*appends* the script's folder (workflow/scripts, where this module lives) to ``sys.path``, after site-packages,
and strips ``PYTHONPATH`` for conda jobs; so the scripts insert the checkout themselves, before any
``import sieve``.
"""

from __future__ import annotations

import sys
from pathlib import Path

WORKFLOW_DIR = str(Path(__file__).resolve().parents[1])

if sys.path[:1] != [WORKFLOW_DIR]:
    sys.path.insert(0, WORKFLOW_DIR)
