"""Progress written to a file or a CI log is one line per stage, never carriage-return
redraws; on a terminal it stays tqdm's bar."""

import subprocess
import sys

from headcoop.progress import StageLine, progress_bar

from .test_robustness import SMALL


def test_a_stage_is_one_line_with_its_count_and_time(capsys):
    for _ in progress_bar(range(5), desc="cache", unit="batch"):
        pass
    with progress_bar(total=3, desc="s-acc", unit="set") as bar:
        bar.update(2)
        bar.set_postfix(loss="0.1")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("cache: 5/5 batches in ") and lines[0].endswith(" s")
    assert lines[1].startswith("s-acc: 2/3 sets in ") and lines[1].endswith("loss 0.1")


def test_a_disabled_bar_prints_nothing(capsys):
    for _ in progress_bar(range(3), desc="x", disable=True):
        pass
    assert capsys.readouterr().err == ""
    assert not isinstance(progress_bar(range(3), disable=True), StageLine)


def test_a_command_logged_to_a_file_has_no_redraws(tmp_path):
    command = [sys.executable, "-m", "headcoop.cli", "train", "--out", str(tmp_path / "r")]
    done = subprocess.run([*command, *SMALL[:-1], "--epochs", "3"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "train: 3/3 epochs in " in done.stderr
