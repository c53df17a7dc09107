"""Memory peaks: the process's resident set and the GPU memory the model's runtime allocated.

Host: ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the kernel's high-water mark of this
process's resident memory (kilobytes on Linux, bytes on macOS). It is a peak over the process's
whole life, so it includes the data and everything the run held before the measurement; it is
what a machine serving this model in one process would have to provide, an upper bound on the
model's own share. The current resident size (``/proc/self/statm``, Linux) is recorded beside it.

GPU: for torch models on CUDA, ``torch.cuda.max_memory_allocated`` after a reset of the peak
statistics, i.e. the peak of tensors the measured calls allocated (the caching allocator may
reserve more). onnxruntime's CUDA provider allocates outside torch, so for ONNX models the
device-wide memory in use (``cudaMemGetInfo``: total minus free, all processes included) is
recorded instead, and says so in ``method``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

MIB = 1024.0 * 1024.0


def peak_rss_bytes() -> int:
    """This process's peak resident set size in bytes (``ru_maxrss``, kB on Linux)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def current_rss_bytes() -> int | None:
    """This process's current resident set size in bytes (Linux ``/proc/self/statm``), else None."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def is_cuda(device: str) -> bool:
    """Whether ``device`` names a CUDA device that torch can see."""
    if not str(device).startswith("cuda"):
        return False
    import torch

    return bool(torch.cuda.is_available())


class GpuPeak:
    """Context manager measuring peak GPU memory of the calls inside it (see the module docstring).

    ``value_bytes`` is ``None`` on a CPU device; ``method`` says what was read.
    """

    def __init__(self, device: str, *, torch_allocated: bool) -> None:
        self.device = str(device)
        self.torch_allocated = torch_allocated
        self.value_bytes: int | None = None
        self.method = ""

    def __enter__(self) -> GpuPeak:
        if is_cuda(self.device):
            import torch

            torch.cuda.synchronize(self.device)
            if self.torch_allocated:
                torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is not None or not is_cuda(self.device):
            return
        import torch

        torch.cuda.synchronize(self.device)
        if self.torch_allocated:
            self.value_bytes = int(torch.cuda.max_memory_allocated(self.device))
            self.method = "torch.cuda.max_memory_allocated (peak of tensors allocated by the measured calls)"
        else:
            free, total = torch.cuda.mem_get_info(self.device)
            self.value_bytes = int(total - free)
            self.method = "cudaMemGetInfo total - free after the measured calls (whole device, every process)"
