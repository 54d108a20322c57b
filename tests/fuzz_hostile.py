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


CLASSES: dict[str, Callable[[Path], Iterator[list[str]]]] = {
    "special files": special_files,
    "sparse files": sparse_files,
    "huge settings": huge_settings,
    "nested JSON": nested_json,
    "config within budget, weights that do not match": mismatched_weights,
    "headers naming tensors the model lacks or declaring gigabytes": lying_headers,
    "torch files: sparse, integer keys, zero strides, unpacked gigabytes": hostile_torch_files,
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


def hostile_table(root: Path) -> list[dict]:
    """Every class, each in a fresh process (the in-process ones) or by its own processes."""
    rows = []
    for name in CLASSES:
        command = [sys.executable, "-m", "tests.fuzz_hostile", name, str(root)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-2000:]
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return [*rows, concurrent_runs(root), full_disk(root), signals(root)]


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
    """SIGTERM to ``headcoop figures --quick`` while its sweep workers train, and Ctrl-C to
    its whole group while they start: one line each (exit 143, 130), no traceback from any
    process, and none of its workers left running."""
    clock, failures = time.perf_counter(), []
    for name, signum, workers, code, line in (
        ("sigterm", 15, 2, 143, "headcoop figures: terminated"),
        ("ctrl_c", 2, 1, 130, "headcoop figures: interrupted"),
    ):
        got, err, left = _interrupt_figures(root, name, signum, workers)
        ok = got == code and err.strip().splitlines()[-1:] == [line]
        if not (ok and not left and "Traceback" not in err):
            failures.append(f"{name}: exit {got}, left {left}: {err[-300:]}")
    return {"class": "signals", "cases": 2, "tracebacks": len(failures), "peak_mb": None,
            "longest_s": round(time.perf_counter() - clock, 2), "failures": failures}  # fmt: skip
