"""The process keeps freed memory: allocating a large array again costs no page faults."""

import platform
import subprocess
import sys

import pytest

ALLOCATE = """
import resource, sys, torch
from headcoop.memory import keep_freed_memory
kept = sys.argv[1] == "keep" and keep_freed_memory()
for _ in range(20):  # until the heap holds enough free memory
    torch.ones(8 * 2**20, dtype=torch.float64)  # 64 MB, freed at once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(8 * 2**20, dtype=torch.float64)
print(int(kept), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", ALLOCATE, mode], capture_output=True, text=True, check=True
    )
    kept, faults = out.stdout.split()
    return kept == "1", int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_memory_is_reused_without_page_faults():
    kept, faults_kept = _faults("keep")
    _, faults_default = _faults("default")
    assert kept
    # By default each 64 MB array is a fresh mapping: 16,384 faults of 4 KB, 10 times.
    assert faults_default > 10 * 8_000
    assert faults_kept < faults_default / 100
