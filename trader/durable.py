"""Files that survive a crash whole: write a temporary file and sync it, rename it over the
target, then sync the folder so the new name is on disk too."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def replace_durably(path: Path, write: Callable[[Path], None], temp: Path | None = None) -> None:
    """`write(temp)` (it must sync the file it writes), rename temp over `path`, sync the folder.

    A failure before the rename removes temp and leaves `path` as it was.
    """
    temp = temp or path.with_name(path.name + ".tmp")
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
