"""`explore --serve`: the explorer's directory on 127.0.0.1, and nothing else.

The standard library's file handler, narrowed: only regular files whose real path lies inside
the directory are served (a symlink out of it is not found), names starting with a dot (the
lock, temporaries) are neither served nor listed, and a request that fails (a client hanging
up, a malformed address) is one log line, not a stack. A taken port moves on to the next free
one, said so.
"""

import functools
import http.server
import logging
from pathlib import Path
from typing import Any

from headcoop.errors import HeadcoopError

PORTS_TRIED = 20
"""Ports tried after a taken one, each the next."""

log = logging.getLogger(__name__)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves regular files inside ``directory`` only, lists no hidden name, logs to `log`."""

    def translate_path(self, path: str) -> str:
        root = Path(self.directory).resolve()
        real = Path(super().translate_path(path)).resolve()
        if real != root and root not in real.parents:
            return str(root / ".not-served")  # outside, through a symlink: not found
        if any(part.startswith(".") for part in real.relative_to(root).parts):
            return str(root / ".not-served")  # the lock, temporaries
        return str(real)

    def list_directory(self, path: str | Any) -> Any:
        self.send_error(404, "no listing")
        return None

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line per failed request (a hang-up, a NUL byte in the address), not a stack."""
        import sys

        exc = sys.exc_info()[1]
        log.warning("request from %s failed: %s: %s", client_address[0], type(exc).__name__, exc)


def serve(page: Path, port: int) -> None:
    """Serve ``page``'s directory on 127.0.0.1 (``port``, or the next free one; 0: any) and
    print the page's address, until Ctrl-C."""
    handler = functools.partial(_Handler, directory=str(page.parent))
    with _bind(handler, port) as server:
        print(f"serving http://127.0.0.1:{server.server_address[1]}/{page.name} (Ctrl-C stops)")
        server.serve_forever()


def _bind(handler: Any, port: int) -> _Server:
    for candidate in range(port, port + PORTS_TRIED + 1) if port else (0,):
        try:
            server = _Server(("127.0.0.1", candidate), handler)
        except OSError as exc:
            if not _taken(exc) or candidate >= 65535:
                raise HeadcoopError(f"cannot serve on port {candidate}: {exc.strerror}") from None
            continue
        if candidate != port:
            print(f"port {port} is taken: serving on port {candidate}")
        return server
    raise HeadcoopError(f"ports {port} to {port + PORTS_TRIED} are all taken (--port)")


def _taken(exc: OSError) -> bool:
    import errno

    return exc.errno in (errno.EADDRINUSE, errno.EACCES)
