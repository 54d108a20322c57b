"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

import gzip
import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, data: str | bytes, compress: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory.

    Args:
        path: the destination; its directory is created if needed.
        data: text (written as UTF-8) or bytes.
        compress: gzip the bytes (for ``.gz`` files).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    if compress:
        raw = gzip.compress(raw, mtime=0)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
