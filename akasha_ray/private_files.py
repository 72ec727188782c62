"""Akasha's data dir is its owner's alone: the dir 0700, every file in it 0600.

Stores (DuckDB, Milvus Lite, Parquet, ledgers) create their files themselves, so the mode comes
from the umask of the process that writes: `akasha up` sets 077 for itself and for the Ray head it
starts (every actor inherits it), and tightens what an earlier run or another umask left behind.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077


def restrict_umask() -> None:
    """Files this process creates from now on are 0600, dirs 0700."""
    os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> None:
    """Create `path` 0700 (and tighten it if it exists); refuse a symlink in its place."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.is_symlink():
        raise OSError(f"{path} is a symlink; Akasha's data dir must be a real directory")
    os.chmod(path, 0o700)


def tighten(data_dir: Path) -> int:
    """Make every dir under `data_dir` 0700 and every file 0600; symlinks are left as they are.

    Returns how many entries changed."""
    changed = 0
    for root, dirs, files in os.walk(data_dir, followlinks=False):
        for name, mode in [(d, 0o700) for d in dirs] + [(f, 0o600) for f in files]:
            path = os.path.join(root, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode) or stat.S_IMODE(info.st_mode) == mode:
                continue
            if stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode):
                os.chmod(path, mode)
                changed += 1
    return changed


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` as 0600, never through a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # the file may predate this call, with another mode
        out.write(text)
