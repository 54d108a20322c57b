"""`explore --serve` serves its own files only, and a bad request or a taken port is a line."""

import functools
import logging
import socket
import threading
import urllib.error
import urllib.request

import pytest

from headcoop.explore import serve as serving
from headcoop.files import LOCK


@pytest.fixture
def served(tmp_path, caplog):
    site, secret = tmp_path / "site", tmp_path / "secret.txt"
    site.mkdir()
    (site / "explorer.html").write_text("<html>page</html>")
    (site / LOCK).write_text("12345")
    secret.write_text("not yours")
    (site / "link.txt").symlink_to(secret)
    handler = functools.partial(serving._Handler, directory=str(site))
    server = serving._bind(handler, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    caplog.set_level(logging.INFO, logger="headcoop.explore.serve")
    yield f"http://127.0.0.1:{server.server_address[1]}", server
    server.shutdown()
    server.server_close()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_only_its_own_files_are_served(served):
    base, _ = served
    assert _status(f"{base}/explorer.html") == 200
    assert _status(f"{base}/link.txt") == 404  # a symlink out of the directory
    assert _status(f"{base}/{LOCK}") == 404
    assert _status(f"{base}/") == 404  # no listing
    assert _status(f"{base}/../secret.txt") == 404


def _raw(server, request: bytes, hang_up: bool = False) -> None:
    with socket.create_connection(server.server_address, timeout=10) as sock:
        sock.sendall(request)
        if not hang_up:
            sock.recv(4096)


def test_a_nul_byte_and_a_hang_up_are_one_log_line_each(served, caplog, capsys):
    base, server = served
    _raw(server, b"GET /explorer%00.html HTTP/1.0\r\n\r\n")
    _raw(server, b"GET /explorer.html HTTP/1.0\r\n\r\n", hang_up=True)
    assert _status(f"{base}/explorer.html") == 200  # still serving
    assert "Traceback" not in capsys.readouterr().err
    failed = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert all("\n" not in line for line in failed)
    assert any("ValueError" in line for line in failed)


def test_a_taken_port_moves_to_the_next_free_one(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = serving._bind(serving._Handler, port)
        try:
            assert server.server_address[1] != port
            assert server.server_address[0] == "127.0.0.1"
        finally:
            server.server_close()
    assert f"port {port} is taken: serving on port" in capsys.readouterr().out
