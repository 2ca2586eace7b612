"""glibc malloc settings for train ranks that compute on CPU: memory a step frees stays for the next step.

A CPU train step allocates and frees activations of megabytes to hundreds of megabytes. glibc serves large blocks
with their own mappings and unmaps them on free, and trims the top of its heap; the next step faults those pages in
again and the kernel zeroes each one. In issue 23's bench (10M model, 128 samples in one micro-batch, 2-core VM)
perf put 46 % of the train actor's time in the kernel's ``clear_page``, with 25k-400k page faults a second. Without
mapped blocks and without trimming, a step reuses what the last one freed. The cost: the process keeps its peak
size, plus some fragmentation (torch allocates with ``posix_memalign``; bench/train_vs_torch.py's 10M run peaked
4 % higher).

A driver whose environment sets any glibc malloc variable (``MALLOC_*_``) or ``GLIBC_TUNABLES`` has chosen for
itself: the train ranks then inherit its environment as it is.
"""

import os

CPU_MALLOC_ENV = {
    "MALLOC_MMAP_MAX_": "0",  # no block gets its own mapping: every block comes from (and returns to) the heap
    "MALLOC_TRIM_THRESHOLD_": str(1 << 40),  # never give the heap's top back to the system
}


def tunes_malloc(name: str) -> bool:
    """Whether an environment variable of this name is a glibc malloc setting."""
    return name.startswith("MALLOC_") or name == "GLIBC_TUNABLES"


def cpu_malloc_env() -> dict[str, str]:
    """The settings above, or none where the driver's environment tunes glibc's malloc itself."""
    return {} if any(tunes_malloc(name) for name in os.environ) else dict(CPU_MALLOC_ENV)
