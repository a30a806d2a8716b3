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


def test_compile_fills_the_numba_cache_dir(tmp_path: Path):
    """`trader compile` leaves the kernels, indicators and the config's strategies cached."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "trader", "compile", "-c",
                           str(REPO / "config.toml")], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=600)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "compiled" in done.stdout and "sma_cross" in done.stdout, done.stdout
    cached = {path.suffix for path in tmp_path.rglob("*")}
    assert {".nbi", ".nbc"} <= cached, sorted(cached)


def test_compile_reports_a_broken_config_in_one_line(tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text('[daemon]\nmode = "bogus"\n')
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    done = trader("compile", "-c", str(config), env=env)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{config}: daemon.mode: "), done.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.nbi"))
