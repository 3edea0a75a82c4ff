"""The allocator policy of a CPU training run: freed memory stays in the process."""

import subprocess
import sys

from pianomuse.allocator import keep_freed_memory

# Page faults of 15 rounds of allocating, filling and freeing tensors of 4-32 MiB, as a
# training step does with its activations, in a fresh process (the policy is process-wide
# and must not leak into the test run), with the policy set first or not.
_PROBE = """
import resource, sys, torch
from pianomuse.allocator import keep_freed_memory
torch.set_num_threads(1)
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
def one_round():
    xs = [torch.empty(n).fill_(1.0) for n in (1 << 20, 2 << 20, 4 << 20, 8 << 20, 2 << 20)]
    del xs
one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(15):
    one_round()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


def test_freed_memory_is_kept_for_the_next_step():
    """With the policy, tensors freed by one round are reused by the next without faulting
    their pages in again (measured: 10,000-20,000 faults in 15 rounds); glibc's default
    gives most of them back (150,000-241,000)."""
    if not sys.platform.startswith("linux"):
        assert keep_freed_memory() is False
        return
    applied, kept = _faults("keep")
    _, default = _faults("default")
    assert applied
    assert default > 50_000  # a round is 17,408 pages: the default faults most of them in
    assert kept * 3 < default


def test_elsewhere_nothing_changes(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert keep_freed_memory() is False
