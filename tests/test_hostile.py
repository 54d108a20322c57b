"""Hostile inputs and faults: compiled code never sees what it cannot read, one process owns
an output directory, half-written files are never trusted, and every refusal is one line."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from headcoop.cli import main
from headcoop.config import ModelConfig
from headcoop.errors import HeadcoopError
from headcoop.files import LOCK, owned
from headcoop.heads.analysis import analysis_saved, read_analysis
from headcoop.heads.analyze import analyze
from headcoop.loading import checkpoint
from headcoop.loading.checkpoint import load_checkpoint, save_checkpoint
from headcoop.model import build_model
from headcoop.pages import PLOTLY_JS, write_plotly_js

from .test_robustness import SMALL, one_line_error


def run_python(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter: a native crash shows as a negative return code."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_functions_that_reach_compiled_code_refuse_bad_input_with_a_python_error():
    """Wrong widths, shapes and dtypes, each fed in a fresh process: a native crash would show
    as a negative return code; every case must end in a `HeadcoopError`."""
    done = run_python(
        """
        import torch
        from headcoop import Count01, ModelConfig, SplitSpec, TrainConfig, analyze, build_model
        from headcoop import train
        from headcoop.errors import HeadcoopError
        from headcoop.metrics.separation import separation_accuracy, separation_accuracy_each

        class Broken(Count01):
            def targets(self, examples):
                return super().targets(examples)[:, :1]  # one target for two readouts

        spec = SplitSpec(60, (0, 20), (0, 20))
        splits = {"train": spec, "val": spec, "test": spec}
        task = Count01(splits=splits)
        model = build_model(ModelConfig(n_heads=4), len(task.vocab), seed=0)
        x, y = torch.randn(3, 50, 2), torch.randint(0, 2, (50,))
        xt, masks = x.transpose(0, 1), torch.ones(2, 3, dtype=torch.bool)
        cases = [
            lambda: analyze(model, task, subsets=torch.ones(3, 7, dtype=torch.bool)),
            lambda: analyze(model, task, subsets=torch.ones(3, 2, dtype=torch.bool)),
            lambda: analyze(model, task, subsets=torch.ones(3, 4)),
            lambda: analyze(model, task, subsets=torch.ones(4, dtype=torch.bool)),
            lambda: train(Broken(splits=splits), ModelConfig(n_heads=2, d_model=4),
                          TrainConfig(epochs=1)),
            lambda: separation_accuracy_each(x, y[:40], x, y),
            lambda: separation_accuracy_each(x, y, torch.randn(3, 50, 3), y),
            lambda: separation_accuracy_each(x, y.float(), x, y),
            lambda: separation_accuracy_each(x.clone().fill_(float("nan")), y, x, y),
            lambda: separation_accuracy(xt, y, xt, y, masks[:, :2]),
            lambda: separation_accuracy(xt, y, xt, y, masks.int()),
        ]
        for case in cases:
            try:
                case()
                print("accepted")
            except HeadcoopError as exc:
                print("refused:", exc)
        """
    )
    assert done.returncode == 0, done.stderr[-1500:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 11 and all(line.startswith("refused: ") for line in lines), lines
    expected = "subsets must be a boolean tensor of shape (sets, 4), got torch.bool of shape (3, 7)"
    assert lines[0] == f"refused: {expected}"
    assert lines[4].startswith("refused: batch targets has shape")


def _hold(directory: Path) -> subprocess.Popen:
    """Another process that owns ``directory`` until it is killed."""
    code = f"from headcoop.files import owned\nimport time\nwith owned({str(directory)!r}, 'x'):\n"
    code += "    print('held', flush=True)\n    time.sleep(600)\n"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_directory_another_process_writes_into_is_refused_in_one_line(tmp_path, capsys):
    holder = _hold(tmp_path / "run")
    try:
        assert main(["train", "--out", str(tmp_path / "run"), *SMALL]) == 1
        one_line_error(capsys, f"is in use by process {holder.pid}")
        assert main(["analyze", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")]) == 1
        one_line_error(capsys, f"is in use by process {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "run" / "epoch_0001").exists()  # nothing of the refused run


def test_the_lock_of_a_process_that_is_gone_is_taken_over(tmp_path, caplog):
    holder = _hold(tmp_path / "run")
    holder.kill()  # killed: its lock file stays, naming it
    holder.wait()
    assert (tmp_path / "run" / LOCK).read_text().strip() == str(holder.pid)
    with owned(tmp_path / "run", "run directory"):
        assert (tmp_path / "run" / LOCK).read_text().strip() == str(os.getpid())
    assert f"taking over the lock of process {holder.pid}" in caplog.text
    assert not (tmp_path / "run" / LOCK).exists()  # released and removed


def test_an_analysis_is_read_whole_or_not_at_all(task, tmp_path):
    out = tmp_path / "analysis"
    model = build_model(ModelConfig(n_heads=4), len(task.vocab), seed=0)
    analyze(model, task, subsets=True).save(out)
    assert "subsets" in read_analysis(out)
    analyze(model, task, subsets=False).save(out)  # --no-subsets over an earlier analysis
    assert not (out / "subsets.csv.gz").exists() and "subsets" not in read_analysis(out)
    heads = (out / "heads.csv").read_bytes()
    (out / "heads.csv").write_bytes(heads[: len(heads) // 2])  # a write cut short
    assert not analysis_saved(out)
    with pytest.raises(HeadcoopError, match="changed or cut short"):
        read_analysis(out)


def test_a_truncated_plotly_script_beside_a_page_is_written_again(tmp_path):
    script = write_plotly_js(tmp_path)
    whole = script.read_bytes()
    script.write_bytes(whole[:1000])  # a full disk during an earlier run
    write_plotly_js(tmp_path)
    assert (tmp_path / PLOTLY_JS).read_bytes() == whole


def test_an_empty_out_and_deeply_nested_json_are_one_line(tmp_path, capsys):
    assert main(["train", "--out", "", *SMALL]) == 1
    one_line_error(capsys, "--out is empty")
    nested = "[" * 100_000 + "]" * 100_000
    assert main(["train", "--out", str(tmp_path / "r"), "--task-param", f"x={nested}"]) == 1
    one_line_error(capsys, "nested too deeply")
    save_checkpoint(tmp_path / "ck", build_model(ModelConfig(n_heads=2), 8, seed=0), {})
    (tmp_path / "ck" / "config.json").write_text(nested)
    assert main(["eval", str(tmp_path / "ck")]) == 1
    one_line_error(capsys, "nested too deeply")


def test_a_corrupt_optimizer_state_is_one_line_on_resume(tmp_path, capsys):
    out = tmp_path / "run"
    constant = ["--lr-schedule", "constant", *SMALL]  # a constant schedule can be extended
    assert main(["train", "--out", str(out), "--epochs", "1", *constant]) == 0
    state = out / "epoch_0001" / "optimizer.safetensors"
    state.write_bytes(state.read_bytes()[:-7] + b"garbage")
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--epochs", "2", "--resume", *constant]) == 1
    one_line_error(capsys, "optimizer.safetensors does not match its checksum")


HOSTILE_MODEL_SECTIONS = (
    {"d_vocab": 10**9},
    {"n_ctx": 10**6},
    {"n_layers": 10**6},
    {"d_model": -3},
)
"""Model sections that ask for terabytes, or make no sense: each refused before building."""


def test_hostile_checkpoints_are_refused_before_anything_large_is_allocated(tmp_path):
    paths = []
    for k, change in enumerate(HOSTILE_MODEL_SECTIONS):
        path = save_checkpoint(tmp_path / f"c{k}", build_model(ModelConfig(n_heads=2), 8, 0), {})
        config = json.loads((path / "config.json").read_text())
        config["model"] |= change
        (path / "config.json").write_text(json.dumps(config))
        paths.append(path)
    sparse = save_checkpoint(tmp_path / "sparse", build_model(ModelConfig(n_heads=2), 8, 0), {})
    with open(sparse / "model.safetensors", "r+b") as handle:
        handle.truncate(4 * 2**30)  # 4 GiB, nearly all a hole
    paths.append(sparse)
    done = run_python(
        f"""
        import time
        from pathlib import Path
        from headcoop.loading.checkpoint import load_checkpoint
        from headcoop.errors import HeadcoopError
        for path in {[str(p) for p in paths]!r}:
            clock = time.perf_counter()
            try:
                load_checkpoint(path)
                print("loaded")
            except HeadcoopError as exc:
                print(f"{{time.perf_counter() - clock:.2f}} {{exc}}")
        status = Path("/proc/self/status").read_text()  # VmHWM: this program's own peak
        print(int(status.split("VmHWM:")[1].split()[0]) / 1024)
        """
    )
    assert done.returncode == 0, done.stderr[-1500:]
    *refusals, peak = done.stdout.strip().splitlines()
    assert float(peak) < 1024  # MB, the whole process
    assert [float(line.split()[0]) < 15 for line in refusals] == [True] * len(paths)
    assert all("over the budget" in line for line in refusals[:2])
    # a million two-head layers fit the budget (2.4 GB); the header lacks them, said unread
    assert "missing parameter 'blocks.1." in refusals[2]
    assert "'d_model' must be a whole number >= 1" in refusals[3]
    assert "but its header describes" in refusals[4]


def test_sigterm_is_one_line_and_exit_143(tmp_path):
    command = [sys.executable, "-m", "headcoop.cli", "train", "--out", str(tmp_path / "r")]
    command += ["--epochs", "1000", *SMALL]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "r" / "epoch_0001").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines() == ["headcoop train: terminated"]


def test_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "r"))

    monkeypatch.setattr(checkpoint, "save_file", full)
    assert main(["train", "--out", str(tmp_path / "r"), "--epochs", "1", *SMALL]) == 1
    one_line_error(capsys, "no space left on device")
    with pytest.raises(HeadcoopError):
        load_checkpoint(tmp_path / "r")  # nothing half-written was left as a checkpoint


def test_float_negative_or_malformed_counts_in_a_split_are_refused():
    """As a user's config or --task-param gives them (in a fresh process: the suite's runtime
    type checks would refuse them before headcoop's own checks do)."""
    done = run_python(
        """
        from headcoop.errors import HeadcoopError
        from headcoop.tasks import Count01
        for split in [
            {"size": 10, "n01": [0, 2.5], "n2": [0, 1]},
            {"size": 10.7, "n01": [0, 2], "n2": [0, 1]},
            {"size": 10, "n01": [-1, 2], "n2": [0, 1]},
            {"size": 10, "n01": [0, 2, 3], "n2": [0, 1]},
        ]:
            try:
                Count01(splits={"train": split, "val": split, "test": split})
                print("accepted")
            except HeadcoopError as exc:
                print("refused:", exc)
        """
    )
    lines = done.stdout.strip().splitlines()
    assert [line.startswith("refused: split ") for line in lines] == [True] * 4, done.stderr


def test_a_number_of_thousands_of_digits_is_one_line(tmp_path, capsys):
    path = save_checkpoint(tmp_path / "ck", build_model(ModelConfig(n_heads=2), 8, seed=0), {})
    text = (path / "config.json").read_text().replace('"d_model": 32', '"d_model": ' + "9" * 5000)
    (path / "config.json").write_text(text)
    assert main(["eval", str(path)]) == 1
    one_line_error(capsys, "Exceeds the limit")
    assert main(["eval", str(path), "--task", "count01", "--task-param", "seed=" + "9" * 5000]) == 1
    one_line_error(capsys, "a number too long to read")


@pytest.mark.parametrize(
    "tamper, problem",
    [
        (lambda out: (out / "manifest.json").write_text("[1, 2]"), "is not file: checksum"),
        (lambda out: _drop_from_manifest(out, "pairs.csv"), "lacks pairs.csv"),
        (lambda out: _rewrite(out, "summary.json", b"[1, 2]\n"), "summary.json is not an object"),
        (lambda out: _rewrite(out, "heads.csv", b'"a\n'), "not a complete analysis"),
    ],
    ids=["manifest a list", "manifest without pairs", "summary a list", "heads unparsable"],
)
def test_a_tampered_analysis_is_refused_in_one_line(task, tmp_path, tamper, problem):
    out = tmp_path / "analysis"
    model = build_model(ModelConfig(n_heads=3), len(task.vocab), seed=0)
    analyze(model, task, subsets=False).save(out)
    tamper(out)
    with pytest.raises(HeadcoopError, match="not a complete analysis") as refused:
        read_analysis(out)
    assert problem in str(refused.value) and "\n" not in str(refused.value)
    assert not analysis_saved(out)  # the commands that cache analyses make it again


def _drop_from_manifest(out: Path, name: str) -> None:
    sums = json.loads((out / "manifest.json").read_text())
    del sums[name]
    (out / "manifest.json").write_text(json.dumps(sums))


def _rewrite(out: Path, name: str, data: bytes) -> None:
    """``name`` replaced, and the manifest's checksum with it (a consistent forgery)."""
    import hashlib

    (out / name).write_bytes(data)
    sums = json.loads((out / "manifest.json").read_text())
    sums[name] = hashlib.sha256(data).hexdigest()
    (out / "manifest.json").write_text(json.dumps(sums))


def test_a_cached_figures_table_cut_mid_line_is_measured_again(tmp_path, caplog):
    import pandas as pd

    from headcoop.paper.compute import FigureData
    from headcoop.paper.plan import Plan

    data = FigureData(Plan.quick(), tmp_path)
    whole = pd.DataFrame({"size": range(21), "mean": [0.5] * 21})
    calls = []

    def make() -> pd.DataFrame:
        calls.append(1)
        return whole

    assert data._csv("grid.csv", make).equals(whole)
    raw = (data.root / "grid.csv").read_bytes()
    (data.root / "grid.csv").write_bytes(raw[: len(raw) // 2 + 3])  # cut mid-line
    assert data._csv("grid.csv", make).equals(whole) and len(calls) == 2
    assert "was changed or cut short" in caplog.text
    assert data._csv("grid.csv", make).equals(whole) and len(calls) == 2  # whole: reused


def test_a_lock_that_is_a_symlink_a_directory_or_a_fifo_is_one_line(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    kinds = {
        "link": lambda lock: lock.symlink_to(victim),
        "dir": lambda lock: lock.mkdir(),
        "fifo": lambda lock: os.mkfifo(lock),
    }
    for name, make in kinds.items():
        run = tmp_path / name
        run.mkdir()
        make(run / LOCK)
        with (
            pytest.raises(
                HeadcoopError,
                match=r"the lock .* (symbolic link|not a regular file|is a directory)",
            ) as refused,
            owned(run, "run directory"),
        ):
            pass
        assert "\n" not in str(refused.value) and "precious" not in str(refused.value)
    assert victim.read_text() == "precious"  # never truncated nor printed


def test_a_stale_lock_with_foreign_content_is_taken_over_without_printing_it(tmp_path, caplog):
    (tmp_path / LOCK).write_text("SECRET line from another file\n")
    with owned(tmp_path, "run directory"):
        pass
    assert "SECRET" not in caplog.text and "process unknown" in caplog.text


def test_overwrite_removes_a_symlinked_epoch_as_a_link_only(tmp_path):
    from headcoop.loading.checkpoint import clear_run

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("kept")
    run = tmp_path / "run"
    (run / "epoch_0002").mkdir(parents=True)
    (run / "epoch_0001").symlink_to(elsewhere, target_is_directory=True)
    clear_run(run)
    assert not (run / "epoch_0001").exists() and not (run / "epoch_0002").exists()
    assert (elsewhere / "keep.txt").read_text() == "kept"


def test_an_unreadable_file_is_one_line(monkeypatch, capsys):
    """As root every file is readable: the refusal is raised where a reader would meet it."""
    from headcoop.cli import model_commands

    def unreadable(args):
        raise PermissionError(errno.EACCES, "Permission denied", "ck/config.json")

    monkeypatch.setattr(model_commands, "run_eval", unreadable)
    assert main(["eval", "ck"]) == 1
    assert (
        capsys.readouterr().err.strip()
        == "headcoop eval: error: permission denied (ck/config.json)"
    )


def test_a_small_address_space_is_one_line_at_import():
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (300 * 2**20, 300 * 2**20))"
    found = run_python(
        f"{limit}\nimport sys\nfrom headcoop.cli import main\nsys.exit(main(['tasks']))"
    )
    lines = found.stderr.strip().splitlines()
    assert found.returncode == 1 and "Traceback" not in found.stderr, found.stderr
    assert lines[-1].startswith("headcoop tasks: error: out of memory")


def test_workers_end_when_their_parent_is_killed():
    """SIGKILL leaves the parent no chance to stop its workers: each notices and ends."""
    found = run_python(
        """
        import os, signal
        from headcoop.training.workers import _worker_pool
        pool = _worker_pool(2)
        pids = {pool.submit(os.getpid).result() for _ in range(8)}
        print(" ".join(map(str, pids)), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    assert found.returncode == -signal.SIGKILL
    pids = [int(p) for p in found.stdout.split()]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    assert pids and not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:  # a zombie waiting for init is gone too
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


SPLIT = '{"size":%d,"n01":[0,20],"n2":[0,20]}'


@pytest.mark.parametrize(
    "argv, named",
    [
        (["train", "--n-ctx", "65536"], "train: the model (its sizes and n_ctx)"),
        (
            [
                "train",
                "--task",
                "histogram",
                "--task-param",
                "size=3000000",
                "--task-param",
                "length=512",
            ],
            "histogram: size x length",
        ),
        (
            [
                "train",
                "--task",
                "induction",
                "--task-param",
                "size=10000000",
                "--task-param",
                "tokens=1000",
            ],
            "induction: size x tokens",
        ),
    ],
    ids=["context", "histogram split", "induction split"],
)
def test_sizes_that_would_allocate_gigabytes_are_refused_naming_them(tmp_path, capsys, argv, named):
    assert main([*argv, "--out", str(tmp_path / "run"), "--epochs", "1", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert named in err and "over the budget of 4.0 GiB" in err and "\n" not in err


def test_a_cache_over_budget_is_refused_before_it_is_built(tmp_path, capsys):
    from headcoop.tasks import Count01

    model = build_model(ModelConfig(n_heads=3), len(Count01().vocab), seed=0)
    save_checkpoint(tmp_path / "ck", model, {"task": Count01().to_config()})
    splits = {"train": SPLIT % 5_000_000, "val": SPLIT % 100, "test": SPLIT % 100}
    text = "{" + ",".join(f'"{k}":{v}' for k, v in splits.items()) + "}"
    argv = ["analyze", str(tmp_path / "ck"), "--out", str(tmp_path / "a"), "--quiet"]
    assert main([*argv, "--task", "count01", "--task-param", f"splits={text}"]) == 1
    err = capsys.readouterr().err.strip()
    assert "the cache of 5,000,000 examples" in err and "over the budget" in err


def test_a_large_task_within_its_rules_is_checked_in_seconds():
    from headcoop.tasks import make_task

    clock = time.perf_counter()
    task = make_task("induction", tokens=1000, half=1000, size=10)
    assert len(task.readouts) == 999 and time.perf_counter() - clock < 20


def test_eval_json_is_valid_json_when_the_loss_is_not_finite(tmp_path, monkeypatch, capsys):
    from headcoop.engine import run
    from headcoop.tasks import Count01

    model = build_model(ModelConfig(n_heads=2), len(Count01().vocab), seed=0)
    save_checkpoint(tmp_path / "ck", model, {"task": Count01().to_config()})
    monkeypatch.setattr(run, "evaluate", lambda *a, **k: {"loss": float("nan"), "answer": 0.0})
    assert main(["eval", str(tmp_path / "ck"), "--json"]) == 0
    found = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(c))
    assert found["loss"] is None and found["answer"] == 0.0


def test_the_pairs_of_thousands_of_heads_are_refused_before_their_masks_exist():
    from headcoop.tasks import Count01, SplitSpec

    spec = SplitSpec(4, (0, 20), (0, 20))  # caches (with their head x head Gram) fit
    task = Count01(splits={"train": spec, "val": spec, "test": spec})
    model = build_model(ModelConfig(n_heads=4096, d_head=1, d_model=2, n_ctx=16), 8, seed=0)
    with pytest.raises(HeadcoopError, match=r"8,390,656 single heads and pairs of 4096"):
        analyze(model, task)
    big = Count01(splits={"train": SplitSpec(50, (0, 20), (0, 20)), "val": spec, "test": spec})
    with pytest.raises(HeadcoopError, match=r"the cache of 50 examples"):
        analyze(model, big)  # its Gram matrix alone would be 6.7 GB
