"""Every cell starts from one declared state of the C allocator, whatever ran before it in the
process: with glibc's default, freeing a heap of large blocks hands it back to the kernel and
the next pass faults every page in again; with the declared thresholds it does not."""

import ctypes.util
import json
import subprocess
import sys

import pytest
from conftest import worker_env

ROUNDS = """
import ctypes, json, resource
from bench_workers.cell import allocator
state = allocator.declare()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
SIZE = 6 * 1024 * 1024  # ten blocks of 6 MiB, as a forward pass's activations come and go
def one_round():
    blocks = [libc.malloc(SIZE) for _ in range(10)]
    for b in blocks:
        ctypes.memset(b, 1, SIZE)
    for b in blocks:
        libc.free(b)
one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    one_round()
print(json.dumps({"state": state, "faults": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4}))
"""

GLIBC = "glibc" in " ".join(__import__("platform").libc_ver())


def _rounds(**env) -> dict:
    res = subprocess.run([sys.executable, "-c", "import ctypes.util\n" + ROUNDS], capture_output=True, text=True, timeout=120,
                         env=worker_env(**env))
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC or not ctypes.util.find_library("c"), reason="the declared state is glibc's")
def test_the_declared_state_keeps_freed_memory_from_being_faulted_in_again():
    declared, default = _rounds(), _rounds(BENCHCTL_ALLOCATOR="default")
    assert declared["state"]["declared"] and declared["state"]["mmap_threshold"] == 32 * 1024 * 1024
    assert not default["state"]["declared"] and "BENCHCTL_ALLOCATOR=default" in default["state"]["reason"]
    # 60 MiB touched per round: 15,360 pages. Declared: reused; default: trimmed and faulted in again.
    assert declared["faults"] < 1_000 < 10_000 < default["faults"], (declared, default)


def test_every_record_says_which_allocator_state_it_was_measured_in(tiny_model):
    from bench_protocol.spec import CellSpec, MeasureRules, ModelRef
    from bench_workers.cell.measure import measure_cell

    rules = MeasureRules(warmup=0, min_iterations=1, min_time=0, max_time=5)
    rec = measure_cell(CellSpec(run_id="20260101-000000-abcdef", pool="cpu", batch_size=1, seq_len=8, dtype="fp32",
                                model=ModelRef(model=str(tiny_model)), rules=rules), "cpu")
    assert rec["status"] == "ok" and isinstance(rec["allocator"], dict)
    assert rec["allocator"]["declared"] is GLIBC or "reason" in rec["allocator"]
