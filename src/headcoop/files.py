"""Files that are never half-written, and the keys that name cached results.

Every result file is written through `atomic_path`: a temporary name in the same directory,
renamed into place once complete, so a reader sees the old file or the new one, never part of
one. Files get the user's umask (as ``open`` would give them), so colleagues on a shared
machine can read results.
"""

import contextlib
import dataclasses
import fcntl
import gzip
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def umask() -> int:
    """The process's umask (read without changing it for longer than a moment)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; on success it is synced and
    renamed into place, on failure removed.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive(path: str | Path, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the block; yields
    whether the lock was taken (always, when ``wait``; without ``wait``, False if another
    process holds it). Locks are released when their process ends, killed or not.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomic(path: str | Path, data: str | bytes, compress: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see `atomic_path`).

    Args:
        path: the destination; its directory is created if needed.
        data: text (written as UTF-8) or bytes.
        compress: gzip the bytes (for ``.gz`` files).
    """
    raw = data.encode() if isinstance(data, str) else data
    if compress:
        raw = gzip.compress(raw, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(raw)
    return Path(path)


def config_key(settings: Any) -> str:
    """A short hash of JSON-able settings (dataclasses included) that names cached results:
    equal settings give equal keys, any change gives another. A dataclass with a ``key_dict``
    method is keyed by what that returns (see `headcoop.config.TrainConfig.key_dict`).

    >>> config_key({"a": 1}) == config_key({"a": 1}) != config_key({"a": 2})
    True
    """

    def plain(value: Any) -> Any:
        if hasattr(value, "key_dict"):
            return value.key_dict()
        if dataclasses.is_dataclass(value):
            return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        raise TypeError(f"cannot key a {type(value).__name__}")

    text = json.dumps(settings, sort_keys=True, default=plain)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def writable_dir(path: str | Path, what: str) -> Path:
    """Make sure results can be written into the directory ``path`` before any work starts:
    create it (and its parents) and write a probe file there.

    Args:
        path: the output directory.
        what: how the user named it, for the message (e.g. ``"--out"``).

    Raises:
        HeadcoopError: one line saying why ``path`` cannot hold results (a file is in the
            way, or the place is not writable).
    """
    from headcoop.errors import HeadcoopError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise HeadcoopError(f"{what} {path} is a file, not a directory")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise HeadcoopError(f"{what} {path} lies under {blocking}, which is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise HeadcoopError(f"{what} {path} cannot be written: {reason.lower()}") from None
    return path
