"""README.md stays true: its config reference is the schema's, its commands are the ones CI runs."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO
from trader import config as cfg
from trader.cli import REFERENCE_BEGIN, REFERENCE_END

README = REPO / "README.md"
REGENERATE = ".venv/bin/trader config-reference --readme README.md"


def readme_block(text: str) -> str:
    """The text between the config-reference marker lines."""
    match = re.search(re.escape(REFERENCE_BEGIN) + r"\n(.*?)" + re.escape(REFERENCE_END),
                      text, re.S)
    assert match, f"README.md has no {REFERENCE_BEGIN} ... {REFERENCE_END} block"
    return match[1]


def trader(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trader", *args], capture_output=True,
                          text=True, cwd=REPO, env=dict(os.environ), timeout=120)


def test_readme_config_reference_is_current() -> None:
    block = readme_block(README.read_text())
    assert block == cfg.render_reference(), (
        f"README.md's config reference differs from the schema; regenerate it: {REGENERATE}")


def test_reference_has_a_row_for_every_key() -> None:
    reference = cfg.render_reference()
    tables = [*(f"[{name}]" for name in cfg.SECTIONS), "[strategies.<name>]"]
    assert re.findall(r"^#### `(.*)`$", reference, re.M) == tables
    sections = re.split(r"^#### ", reference, flags=re.M)[1:]
    for section, cls in zip(sections, [*cfg.SECTIONS.values(), cfg.StrategyConfig], strict=True):
        rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", section, re.M)
        assert [name for name, _ in rows] == [f.name for f in dataclasses.fields(cls)]
    assert "| `mode` | `\"paper\"` | `paper` \\| `shadow` \\| `live` |  | restart |" in reference
    assert "| `shutdown_timeout_s` | `10.0` | number > 0, <= 600 | s | hot |" in reference


def test_command_prints_the_reference_and_updates_a_readme(tmp_path: Path) -> None:
    done = trader("config-reference")
    assert done.returncode == 0, done.stderr
    assert done.stdout == cfg.render_reference()

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{REFERENCE_BEGIN}\nstale\n{REFERENCE_END}\n\nafter\n")
    done = trader("config-reference", "--readme", str(readme))
    assert done.returncode == 0, done.stderr
    text = readme.read_text()
    assert readme_block(text) == cfg.render_reference()
    assert text.startswith(f"# x\n\n{REFERENCE_BEGIN}\n") and text.endswith(
        f"{REFERENCE_END}\n\nafter\n")


def test_command_refuses_a_readme_without_the_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    shutil.copy(REPO / "strategies" / "README.md", readme)
    before = readme.read_text()
    done = trader("config-reference", "--readme", str(readme))
    assert done.returncode == 1
    assert done.stderr == f"{readme}: no {REFERENCE_BEGIN} ... {REFERENCE_END} block\n"
    assert readme.read_text() == before


def test_readme_starts_with_the_install_and_test_commands() -> None:
    """The first command runs the daemon; .ci/run runs the line under the test marker."""
    text = README.read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", text, re.S)
    assert blocks[0] == ("python3 -m venv .venv && .venv/bin/pip install -q -e . && "
                         ".venv/bin/trader compile && .venv/bin/trader run")
    marker = text.index("<!-- test command")
    assert text[marker:].split("\n")[2] == blocks[1]
    assert blocks[1] == ("python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && "
                         ".venv/bin/python -m pytest -q")
