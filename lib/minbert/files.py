"""Atomic file writes: a file appears under its name complete, or not at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def remove_partials(folder: Path, name: str = "") -> list[Path]:
    """Delete what interrupted atomic writes left in a folder (`.<name>.<random>.part<suffix>`), of
    the file `name` only when given (another process may be writing the others)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".{name}.*.part*" if name else ".*.part*"
    leftovers = [p for p in folder.glob(pattern) if p.is_file()]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def atomic_write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
