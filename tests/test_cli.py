"""The command line as a user meets it: a real `trader` process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO


def trader(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trader", *args], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=120)


def test_every_command_runs_under_the_units_numba_cache_dir(tmp_path: Path):
    """systemd sets NUMBA_CACHE_DIR; pinning it reads the compiled sources, wherever they are."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    done = trader("check-config", "-c", str(REPO / "config.toml"), env=env)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
