"""mypy (strict, as configured in pyproject.toml) stays clean over trader/."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO


def test_mypy_is_clean():
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
