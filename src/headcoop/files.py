"""Files that are never half-written, and the keys that name cached results.

Every result file is written through `atomic_path`: a temporary name in the same directory,
renamed into place once complete, so a reader sees the old file or the new one, never part of
one. Files get the user's umask (as ``open`` would give them), so colleagues on a shared
machine can read results.
"""

import contextlib
import dataclasses
import errno
import fcntl
import gzip
import hashlib
import json
import logging
import math
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
    with open_lock(path, "lock") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


LOCK = ".headcoop.lock"
"""The file in an output directory that names the process writing into it."""

_OWNED: set[Path] = set()
"""The directories this process owns (ownership is re-entrant within a process)."""


@contextlib.contextmanager
def owned(directory: str | Path, what: str) -> Iterator[Path]:
    """Own ``directory`` for the block: one process at a time writes into a run, an analysis
    or a report directory, so that two runs never mix.

    The lock is ``directory/.headcoop.lock``, held with ``flock`` (released by the kernel when
    its process ends, killed or not) and naming its owner's pid. A second process is refused
    with one line naming the owner; a lock file left by a process that is gone is taken over,
    and a warning says so.

    Raises:
        HeadcoopError: another living process owns ``directory``.
    """
    directory = Path(directory).resolve()
    if directory in _OWNED:
        yield directory
        return
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK
    handle = _lock_file(path, what, directory)
    with handle:
        previous = _owner(handle)
        if previous and previous != str(os.getpid()):
            logging.getLogger(__name__).warning(
                "%s %s: taking over the lock of process %s, which is gone",
                what,
                directory,
                previous,
            )
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        _OWNED.add(directory)
        try:
            yield directory
        finally:
            _OWNED.discard(directory)
            path.unlink(missing_ok=True)  # before the lock goes: a waiting opener re-checks


def _lock_file(path: Path, what: str, directory: Path) -> Any:
    """``path`` opened and locked by this process, the file still at ``path`` (a lock taken on
    a file that its owner removed meanwhile is no lock: then try again)."""
    from headcoop.errors import HeadcoopError

    while True:
        handle = open_lock(path, what)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = _owner(handle) or "unknown"
            handle.close()
            raise HeadcoopError(
                f"{what} {directory} is in use by process {owner} (lock {path}); wait for it "
                "or choose another directory"
            ) from None
        if path.exists() and os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
            handle.seek(0)
            return handle
        handle.close()


def _owner(handle: Any) -> str:
    """The pid a lock file names; "unknown" where it holds anything else (never another
    file's content), "" where it is empty."""
    text = handle.read(32).strip()
    return text if text.isdigit() or not text else "unknown"


def open_lock(path: Path, what: str) -> Any:
    """The lock file ``path`` opened for reading and writing, created if missing, never through
    a symlink (``O_NOFOLLOW``) and only if it is a regular file: a lock never writes into a
    file that is not its own.

    Raises:
        HeadcoopError: ``path`` is a symlink, a directory, a FIFO or unreadable.
    """
    import stat

    from headcoop.errors import HeadcoopError

    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o666 & ~umask())
    except OSError as exc:
        kind = "a symbolic link" if exc.errno == errno.ELOOP else exc.strerror.lower()
        raise HeadcoopError(f"{what}: the lock {path} cannot be used: {kind}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise HeadcoopError(f"{what}: the lock {path} is not a regular file; remove it")
    return os.fdopen(fd, "r+")


MAX_JSON_BYTES = 16 * 2**20
"""The largest JSON file headcoop reads (a config.json is a few kB)."""


def read_json(path: str | Path, what: str, limit: int = MAX_JSON_BYTES) -> Any:
    """Parse the JSON file ``path``, refusing with one line what is not a regular file of at
    most ``limit`` bytes, not UTF-8, not JSON or nested too deeply to parse.

    Raises:
        HeadcoopError: naming ``what`` and the problem.
    """
    from headcoop.errors import HeadcoopError

    path = Path(path)
    try:
        if not path.is_file():
            raise HeadcoopError(f"{what} {path} is missing or not a regular file")
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise HeadcoopError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise HeadcoopError(f"{what} {path} is larger than {limit:,} bytes")
    return parse_json(raw, f"{what} {path}")


def parse_json(raw: str | bytes, what: str) -> Any:
    """``json.loads``, with every way it fails as one `HeadcoopError` naming ``what``."""
    from headcoop.errors import HeadcoopError

    try:
        return json.loads(raw)
    except RecursionError:
        raise HeadcoopError(f"{what} is corrupt: nested too deeply to read") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeadcoopError(f"{what} is corrupt: not valid JSON ({exc})") from None
    except ValueError as exc:  # an integer of thousands of digits
        raise HeadcoopError(f"{what} is corrupt: {str(exc).split(':')[0]}") from None


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


def write_checked(path: str | Path, data: str | bytes) -> Path:
    """Write a cached result atomically, then its SHA-256 beside it (``path.sha256``), so that
    `read_checked` can tell a whole file from one cut short or edited since."""
    raw = data.encode() if isinstance(data, str) else data
    write_atomic(path, raw)
    write_atomic(f"{path}.sha256", hashlib.sha256(raw).hexdigest() + "\n")
    return Path(path)


def read_checked(path: str | Path) -> bytes | None:
    """The bytes of a cached result written by `write_checked`, or None where there is none or
    it does not match its checksum (one warning line: it is then measured again)."""
    path = Path(path)
    if not path.is_file():
        return None
    raw, stamp = path.read_bytes(), Path(f"{path}.sha256")
    digest = stamp.read_text().strip() if stamp.is_file() else None
    if digest != hashlib.sha256(raw).hexdigest():
        logging.getLogger(__name__).warning(
            "cached %s was changed or cut short (or has no checksum): measured again", path
        )
        return None
    return raw


def strict_json(value: Any) -> str:
    """``value`` as standard JSON on one line: a number that is not finite (a NaN loss, say),
    which ``json.dumps`` would write as the invalid ``NaN``, becomes null.

    >>> strict_json({"loss": float("nan"), "accuracy": [1.0, float("inf")]})
    '{"loss": null, "accuracy": [1.0, null]}'
    """

    def finite(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: finite(v) for k, v in x.items()}
        return [finite(v) for v in x] if isinstance(x, list | tuple) else x

    return json.dumps(finite(value), allow_nan=False)


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

    if not str(path).strip():
        raise HeadcoopError(f"{what} is empty: name a directory")
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
