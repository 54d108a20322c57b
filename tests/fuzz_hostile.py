"""Hostile inputs by class, for ``make fuzz``: special files, sparse files, huge settings,
nested JSON, concurrent runs, a full disk and SIGTERM to a sweep. Each class runs in a fresh process
(``python -m tests.fuzz_hostile CLASS DIR``), so that its peak memory is its own; every case
must end in exit 0 or one line and exit 1, never a traceback.

`hostile_table` returns, per class: cases tried, tracebacks, the largest peak memory of the
process (MB) and the longest time to refuse one case (s).
"""

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from headcoop.cli import main

SPLITS = json.dumps(
    {
        "train": {"size": 48, "n01": [0, 8], "n2": [0, 8]},
        "val": {"size": 16, "n01": [9, 12], "n2": [0, 12]},
        "test": {"size": 16, "n01": [13, 16], "n2": [0, 16]},
    }
)
TRAIN = ["--task-param", f"splits={SPLITS}", "--d-model", "4", "--n-heads", "2", "--quiet"]


def _call(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # a traceback: what this fuzz exists to find
            return -1, f"{type(exc).__name__}: {exc}"
    return code, err.getvalue()


def _checkpoint(root: Path) -> Path:
    run = root / "clean"
    if not (run / "final").exists():
        assert _call(["train", "--out", str(run), "--epochs", "1", *TRAIN])[0] == 0
    return (run / "final").resolve()


def _copy(clean: Path, root: Path, name: str) -> Path:
    import shutil

    copy = root / name
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(clean, copy)
    return copy


def special_files(root: Path) -> Iterator[list[str]]:
    clean = _checkpoint(root)
    special = (
        ("config.json", "fifo"),
        ("model.safetensors", "/dev/zero"),
        ("config.json", "/dev/urandom"),
        ("model.safetensors", "dir"),
    )
    for name, target in special:
        copy = _copy(clean, root, f"special_{name}_{Path(target).name}")
        (copy / name).unlink()
        if target == "fifo":
            os.mkfifo(copy / name)
        elif target == "dir":
            (copy / name).mkdir()
        else:
            (copy / name).symlink_to(target)
        yield ["eval", str(copy)]


def _with_model(copy: Path, change: dict) -> Path:
    """``copy`` with its config.json's model section changed."""
    config = json.loads((copy / "config.json").read_text())
    config["model"] |= change
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def sparse_files(root: Path) -> Iterator[list[str]]:
    clean = _checkpoint(root)
    for gib in (1, 4, 16):
        copy = _copy(clean, root, f"sparse_{gib}")
        with open(copy / "model.safetensors", "r+b") as handle:
            handle.truncate(gib * 2**30)
        yield ["eval", str(copy)]


def huge_settings(root: Path) -> Iterator[list[str]]:
    clean = _checkpoint(root)
    changes = [{"d_vocab": 10**9}, {"n_ctx": 10**7}, {"n_layers": 10**7}, {"d_model": 2**40},
               {"n_heads": 10**6, "d_head": 10**6}, {"d_mlp": 10**12}]  # fmt: skip
    for k, change in enumerate(changes):
        yield ["eval", str(_with_model(_copy(clean, root, f"huge_{k}"), change))]
    yield ["train", "--out", str(root / "huge_train"), "--n-ctx", str(10**7), *TRAIN]


def nested_json(root: Path) -> Iterator[list[str]]:
    clean = _checkpoint(root)
    for depth in (1_000, 100_000, 1_000_000):
        nested = "[" * depth + "]" * depth
        copy = _copy(clean, root, f"nested_{depth}")
        (copy / "config.json").write_text(nested)
        yield ["eval", str(copy)]
        yield ["train", "--out", str(root / f"nested_run_{depth}"), "--task-param", f"x={nested}"]
        yield ["train", "--out", str(root / f"nested_splits_{depth}"), "--task-param",
               f"splits={nested}"]  # fmt: skip


def _unsigned_copy(clean: Path, root: Path, name: str) -> Path:
    """A copy without the weights' checksum, as a checkpoint written by other code has none:
    the weights themselves must be refused."""
    copy = _copy(clean, root, name)
    config = json.loads((copy / "config.json").read_text())
    config.pop("weights_sha256")
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def _header(file: Path) -> tuple[dict, bytes]:
    raw = file.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + length]), raw[8 + length :]


def _write_safetensors(file: Path, header: dict, data: bytes, size: int | None = None) -> None:
    """A safetensors file with this header, this data, and (as a hole) up to ``size`` bytes."""
    text = json.dumps(header).encode()
    with open(file, "wb") as handle:
        handle.write(len(text).to_bytes(8, "little") + text + data)
        if size is not None:
            handle.truncate(size)


def mismatched_weights(root: Path) -> Iterator[list[str]]:
    """Configs within the memory budget (up to 3.5 GB of parameters) whose weights file is the
    small model's, and small configs whose weights are of another shape."""
    clean = _checkpoint(root)
    changes = [{"d_model": 4096, "n_heads": 64, "d_head": 64, "n_layers": 12, "n_ctx": 64},
               {"d_vocab": 200_000, "d_model": 4096, "n_ctx": 64}, {"n_layers": 2},
               {"d_head": 4}, {"attn_only": False, "d_mlp": 64}]  # fmt: skip
    for k, change in enumerate(changes):
        yield ["eval", str(_with_model(_unsigned_copy(clean, root, f"mismatch_{k}"), change))]


def lying_headers(root: Path) -> Iterator[list[str]]:
    """safetensors headers that name tensors the model lacks, declare gigabytes (the file
    grown to match, as a hole), relabel a dtype, or hold malformed offsets and shapes."""
    clean = _checkpoint(root)
    header, data = _header(clean / "model.safetensors")
    name = next(k for k in header if k != "__metadata__")
    end = len(data)
    cases = [
        (
            {
                "extra.W": {
                    "dtype": "F32",
                    "shape": [2**15, 2**15],
                    "data_offsets": [end, end + 2**32],
                }
            },
            end + 2**32,
        ),
        ({name: {**header[name], "shape": [2**20, 2**20]}}, None),
        ({name: {**header[name], "dtype": "I32"}}, None),
    ] + [
        ({name: {**header[name], "data_offsets": bad}}, None) for bad in (None, "0", 7, [], [5, 1])
    ]
    cases += [({name: {**header[name], "shape": 12}}, None), ({name: None}, None)]
    for k, (change, size) in enumerate(cases):
        copy = _unsigned_copy(clean, root, f"header_{k}")
        _write_safetensors(
            copy / "model.safetensors",
            header | change,
            data,
            None if size is None else 8 + len(json.dumps(header | change)) + size,
        )
        yield ["eval", str(copy)]


def hostile_torch_files(root: Path) -> Iterator[list[str]]:
    """torch files holding a sparse tensor, integer keys, a zero-stride view of a few bytes
    that a dense copy makes gigabytes, or a compressed archive that unpacks to gigabytes."""
    import zipfile

    import torch
    from safetensors.torch import load_file

    clean = _checkpoint(root)
    state = load_file(clean / "model.safetensors")
    name = next(iter(state))
    cases = {
        "sparse": state | {name: state[name].to_sparse()},
        "int_keys": {k: v for k, v in state.items()} | {7: state[name]},
        "zero_stride": state | {name: torch.zeros(1).expand(2**16, 2**16)},
        "ints": state | {name: state[name].long()},
    }
    for label, tensors in cases.items():
        copy = _unsigned_copy(clean, root, f"torch_{label}")
        (copy / "model.safetensors").unlink()
        torch.save(tensors, copy / "model.pt")
        yield ["eval", str(copy)]
    copy = _unsigned_copy(clean, root, "torch_compressed")
    (copy / "model.safetensors").unlink()
    with zipfile.ZipFile(copy / "model.pt", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data/0", bytes(2**31))  # 2 GiB of zeros, a few MB packed
    yield ["eval", str(copy)]


def allocating_sizes(root: Path) -> Iterator[list[str]]:
    clean, run = _checkpoint(root), ["--out", str(root / "sizes_run"), "--epochs", "1", "--quiet"]
    yield ["train", *run, "--n-ctx", "65536"]
    for task, params in (("histogram", ("size=3000000", "length=512")),
                         ("induction", ("size=10000000", "tokens=1000"))):  # fmt: skip
        yield ["train", *run, "--task", task, *(f"--task-param={p}" for p in params)]
    large = ("size=100", "tokens=1000", "half=1000")  # within every rule: checked in seconds
    yield ["eval", str(clean), "--task", "induction", *(f"--task-param={p}" for p in large)]
    split = {"size": 2_000_000, "n01": [0, 20], "n2": [0, 20]}
    splits = json.dumps(json.loads(SPLITS) | {"train": split})
    out = ["--out", str(root / "sizes_analysis"), "--quiet"]
    os.environ["HEADCOOP_MAX_MEMORY"] = "1"  # a cache of 1.4 GiB, refused before it is built
    yield ["analyze", str(clean), *out, "--task", "count01", "--task-param", f"splits={splits}"]
    del os.environ["HEADCOOP_MAX_MEMORY"]


def broken_user_tasks(root: Path) -> Iterator[list[str]]:
    from tests.test_user_task import BUGS, CASES  # the suite's broken tasks, one of each bug

    clean, file = _checkpoint(root), root / "broken_tasks.py"
    file.write_text(BUGS)
    for name in CASES:
        yield ["eval", str(clean), "--task", f"{file}:{name}"]
        yield ["analyze", str(clean), "--out", str(root / f"broken_{name}"), "--task",
               f"{file}:{name}", "--quiet"]  # fmt: skip


def tampered_analyses(root: Path) -> Iterator[list[str]]:
    clean = _checkpoint(root)
    tampers = {
        "manifest_list": lambda d: (d / "manifest.json").write_text("[1, 2]"),
        "manifest_without_pairs": lambda d: _edit_manifest(d, lambda m: m.pop("pairs.csv")),
        "summary_list": lambda d: _forge(d, "summary.json", b"[]"),
        "heads_cut": lambda d: (d / "heads.csv").write_bytes((d / "heads.csv").read_bytes()[:40]),
    }
    for name, tamper in tampers.items():
        out = root / f"tampered_{name}"
        assert _call(["analyze", str(clean), "--out", str(out), "--quiet"])[0] == 0
        tamper(out)
        yield ["explore", str(clean), "--out", str(out)]  # made again, exit 0


def _edit_manifest(out: Path, edit: Callable[[dict], object]) -> None:
    sums = json.loads((out / "manifest.json").read_text())
    edit(sums)
    (out / "manifest.json").write_text(json.dumps(sums))


def _forge(out: Path, name: str, data: bytes) -> None:
    """``name`` replaced and its checksum in the manifest with it."""
    import hashlib

    (out / name).write_bytes(data)
    _edit_manifest(out, lambda m: m.update({name: hashlib.sha256(data).hexdigest()}))


def locks_and_links(root: Path) -> Iterator[list[str]]:
    clean, victim = _checkpoint(root), root / "victim.txt"
    victim.write_text("not a lock")
    for kind in ("symlink", "dir", "fifo"):
        out = root / f"lock_{kind}"
        out.mkdir(exist_ok=True)
        lock = out / ".headcoop.lock"
        if lock.is_symlink() or lock.exists():
            pass
        elif kind == "symlink":
            lock.symlink_to(victim)
        else:
            lock.mkdir() if kind == "dir" else os.mkfifo(lock)
        yield ["analyze", str(clean), "--out", str(out), "--quiet"]
    run = root / "linked_run"
    assert _call(["train", "--out", str(run), "--epochs", "1", *TRAIN])[0] == 0
    (root / "elsewhere").mkdir(exist_ok=True)
    (run / "epoch_0007").unlink(missing_ok=True)
    (run / "epoch_0007").symlink_to(root / "elsewhere", target_is_directory=True)
    yield ["train", "--out", str(run), "--epochs", "1", "--overwrite", *TRAIN]
    assert victim.read_text() == "not a lock" and (root / "elsewhere").is_dir()


CLASSES: dict[str, Callable[[Path], Iterator[list[str]]]] = {
    "special files": special_files,
    "sparse files": sparse_files,
    "huge settings": huge_settings,
    "nested JSON": nested_json,
    "config within budget, weights that do not match": mismatched_weights,
    "headers naming tensors the model lacks or declaring gigabytes": lying_headers,
    "torch files: sparse, integer keys, zero strides, unpacked gigabytes": hostile_torch_files,
    "task parameters and sizes that allocate gigabytes or hang": allocating_sizes,
    "a user's task with bugs": broken_user_tasks,
    "tampered analyses (made again)": tampered_analyses,
    "locks that are links, directories or FIFOs; a symlinked epoch": locks_and_links,
}


def run_class(name: str, root: Path) -> dict:
    """Run one class's cases in this process; one row of the table (its times leave out the
    one-off import of torch and TransformerLens, done first)."""
    import headcoop.engine.run
    import headcoop.training.trainer  # noqa: F401

    tracebacks, longest, cases = [], 0.0, 0
    for argv in CLASSES[name](root):
        clock = time.perf_counter()
        code, err = _call(argv)
        longest = max(longest, time.perf_counter() - clock)
        cases += 1
        lines = err.strip().splitlines()
        if code == -1 or (code != 0 and (len(lines) != 1 or "Traceback" in err)):
            tracebacks.append(f"{argv[:2]}: {err.strip()[:300]}")
    status = Path("/proc/self/status").read_text()  # VmHWM, unlike ru_maxrss, restarts at exec
    peak = int(status.split("VmHWM:")[1].split()[0]) / 1024
    return {"class": name, "cases": cases, "tracebacks": len(tracebacks), "peak_mb": round(peak),
            "longest_s": round(longest, 2), "failures": tracebacks}  # fmt: skip


def concurrent_runs(root: Path) -> dict:
    """Two ``train`` processes started together on one run directory: one trains, the other
    is refused in one line; the run holds one seed's epochs only."""
    out = root / "concurrent"
    command = [sys.executable, "-m", "headcoop.cli", "train", "--out", str(out), "--epochs", "4"]
    clock = time.perf_counter()
    runs = [
        subprocess.Popen([*command, *TRAIN, "--seed", str(seed)], stderr=subprocess.PIPE, text=True)
        for seed in (0, 1)
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in runs]
    codes = sorted(code for code, _ in results)
    refused = [err for code, err in results if code == 1]
    seeds = {
        json.loads((e / "config.json").read_text())["train"]["seed"] for e in out.glob("epoch_*")
    }
    ok = codes == [0, 1] and len(refused[0].strip().splitlines()) == 1 and len(seeds) == 1
    return {"class": "concurrent runs", "cases": 1, "tracebacks": 0 if ok else 1, "peak_mb": None,
            "longest_s": round(time.perf_counter() - clock, 2),
            "failures": [] if ok else [str(results)]}  # fmt: skip


def full_disk(root: Path) -> dict:
    """``train`` into a 2 MB tmpfs (where this machine lets us mount one): one line, exit 1."""
    mount = root / "tmpfs"
    mount.mkdir(exist_ok=True)
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if made.returncode != 0:
        return {"class": "full disk", "cases": 0, "tracebacks": 0, "peak_mb": None,
                "longest_s": None, "failures": ["skipped: no tmpfs could be mounted"]}  # fmt: skip
    try:
        command = [sys.executable, "-m", "headcoop.cli", "train", "--out", str(mount / "r")]
        clock = time.perf_counter()
        done = subprocess.run([*command, "--epochs", "200", *TRAIN, "--d-model", "64"],
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        lines = done.stderr.strip().splitlines()
        ok = done.returncode == 1 and len(lines) == 1 and "no space left" in lines[0]
        return {"class": "full disk", "cases": 1, "tracebacks": 0 if ok else 1, "peak_mb": None,
                "longest_s": round(time.perf_counter() - clock, 2),
                "failures": [] if ok else [done.stderr[-500:]]}  # fmt: skip
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


SERVED_REQUESTS = (
    b"GET /explorer.html HTTP/1.0\r\n\r\n",
    b"GET /explorer%00.html HTTP/1.0\r\n\r\n",
    b"GET /../../etc/passwd HTTP/1.0\r\n\r\n",
    b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.0\r\n\r\n",
    b"GET /out.txt HTTP/1.0\r\n\r\n",
    b"GET /.headcoop.lock HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GARBAGE\x00\xff\r\n\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.0\r\n\r\n",
)
"""Requests to the served explorer: its page, a NUL byte, traversals, a symlink out, the lock,
a listing, garbage and an overlong line; each is sent whole, then again with a hang-up."""


def served_explorer(root: Path) -> dict:
    """`explore --serve`'s server on a directory holding a symlink out and a lock: only the
    page is served, every bad request is at most one log line, a taken port moves on."""
    import functools
    import socket
    import threading

    from headcoop.explore import serve as serving

    site = root / "served"
    site.mkdir(exist_ok=True)
    (site / "explorer.html").write_text("<html></html>")
    (site / ".headcoop.lock").write_text("1")
    (root / "secret.txt").write_text("secret")
    if not (site / "out.txt").is_symlink():
        (site / "out.txt").symlink_to(root / "secret.txt")
    err, clock, failures = io.StringIO(), time.perf_counter(), []
    with contextlib.redirect_stderr(err):
        server = serving._bind(functools.partial(serving._Handler, directory=str(site)), 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        replies = []
        for request in SERVED_REQUESTS:
            for hang_up in (False, True):
                with socket.create_connection(server.server_address, timeout=10) as sock:
                    sock.sendall(request)
                    replies.append(b"" if hang_up else sock.recv(65536))
        with contextlib.redirect_stdout(io.StringIO()):
            taken = serving._bind(serving._Handler, server.server_address[1])
        taken.server_close()
        server.shutdown()
        server.server_close()
    if not replies[0].startswith(b"HTTP/1.0 200"):
        failures.append(f"the page was not served: {replies[0][:80]!r}")
    leaked = [r[:60] for r in replies[1:] if b" 200 " in r.split(b"\r\n")[0]]
    failures += [f"served: {r!r}" for r in leaked] + (
        ["a traceback"] if "Traceback" in err.getvalue() else []
    )
    return {"class": "served explorer", "cases": 2 * len(SERVED_REQUESTS) + 1,
            "tracebacks": len(failures), "peak_mb": None,
            "longest_s": round(time.perf_counter() - clock, 2), "failures": failures}  # fmt: skip


def small_address_space(root: Path) -> dict:
    """Commands under ``ulimit -v`` of 300 MB to 2 GB (torch's import alone needs more than
    the first): one line and exit 1 where they cannot run, never a traceback."""
    import resource

    clean, longest, failures, cases = _checkpoint(root), 0.0, [], 0
    for megabytes in (300, 1000, 2000):
        limit = megabytes * 2**20

        def cap(limit: int = limit) -> None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        for argv in (["tasks"], ["eval", str(clean)]):
            cases, clock = cases + 1, time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "headcoop.cli", *argv], preexec_fn=cap,
                                  capture_output=True, text=True, timeout=300)  # fmt: skip
            longest = max(longest, time.perf_counter() - clock)
            if "Traceback" in done.stderr or done.returncode not in (0, 1):
                failures.append(f"{megabytes} MB {argv[0]}: {done.stderr.strip()[-300:]}")
    return {"class": "a small ulimit -v", "cases": cases, "tracebacks": len(failures),
            "peak_mb": None, "longest_s": round(longest, 2),
            "failures": failures}  # fmt: skip


def hostile_table(root: Path) -> list[dict]:
    """Every class, each in a fresh process (the in-process ones) or by its own processes."""
    rows = []
    for name in CLASSES:
        command = [sys.executable, "-m", "tests.fuzz_hostile", name, str(root)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-2000:]
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    checks = (concurrent_runs, full_disk, served_explorer, small_address_space, signals)
    return [*rows, *(check(root) for check in checks)]


if __name__ == "__main__":
    print(json.dumps(run_class(sys.argv[1], Path(sys.argv[2]))))


def _children(pid: int) -> set[int]:
    """The processes ``pid`` started (and theirs), from /proc."""
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError):
                kids = {int(k) for k in (task / "children").read_text().split()}
                todo += list(kids - found)
                found |= kids
    return found


def _alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}").exists()}


def _command(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    return "?"


def _interrupt_figures(root: Path, name: str, signum: int, workers: int) -> tuple[int, str, dict]:
    """Start ``headcoop figures --quick`` in a session of its own, wait until ``workers`` of
    its helper processes run, signal it (SIGINT: the whole group, as a terminal does; SIGTERM:
    the command alone); its exit code, stderr and any helper left running."""
    out, cache = root / f"{name}_out", root / f"{name}_cache"
    command = [sys.executable, "-m", "headcoop.cli", "figures", "--quick", "--no-png", "--quiet"]
    command += ["--out", str(out), "--cache", str(cache), "--claims", str(root / "no_lab")]
    figures = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    clock, seen = time.perf_counter(), set()
    while figures.poll() is None and time.perf_counter() - clock < 600:
        seen |= _children(figures.pid)
        if len(seen) >= workers and (cache / "sweeps").exists():
            break
        time.sleep(0.1)
    if signum == 2:
        os.killpg(figures.pid, signum)
    else:
        figures.send_signal(signum)
    code, err = figures.wait(timeout=120), figures.stderr.read()
    deadline = time.perf_counter() + 10  # multiprocessing's helpers end once their pipe closes
    while time.perf_counter() < deadline and _alive(seen):
        time.sleep(0.2)
    return code, err, {pid: _command(pid) for pid in _alive(seen)}


def signals(root: Path) -> dict:
    """SIGTERM to ``headcoop figures --quick`` while its sweep workers train, Ctrl-C to its
    whole group while they start, and SIGKILL: one line each for the first two (exit 143,
    130), no traceback from any process, and none of its workers left running after any."""
    clock, failures = time.perf_counter(), []
    for name, signum, workers, code, line in (
        ("sigterm", 15, 2, 143, "headcoop figures: terminated"),
        ("ctrl_c", 2, 1, 130, "headcoop figures: interrupted"),
        ("sigkill", 9, 2, -9, None),  # no line can be said; the workers must still end
    ):
        got, err, left = _interrupt_figures(root, name, signum, workers)
        ok = got == code and (line is None or err.strip().splitlines()[-1:] == [line])
        if not (ok and not left and "Traceback" not in err):
            failures.append(f"{name}: exit {got}, left {left}: {err[-300:]}")
    return {"class": "signals", "cases": 3, "tracebacks": len(failures), "peak_mb": None,
            "longest_s": round(time.perf_counter() - clock, 2), "failures": failures}  # fmt: skip
