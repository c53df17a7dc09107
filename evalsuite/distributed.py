"""torchrun as the engine of a sharded run: which rank this process is, its GPU, and the one barrier.

Under ``torchrun --nproc-per-node=K -m evalsuite run ...`` (or multi-node, with torchrun's c10d
rendezvous) every rank is shard ``RANK`` of ``WORLD_SIZE`` (:mod:`evalsuite.shards`): it writes
its work units to the shared units folder beside ``--out``. Predictions never cross the process
group; they travel through that shared folder, so the group carries one integer per rank (did
the shard succeed?) in an ``all_reduce`` that is also the barrier before rank 0 merges. That is
why the group is always gloo: it runs on every machine torch runs on, needs no GPU and no NCCL
device binding for a handful of bytes, and the GPUs stay free for the model.

Each rank uses its own GPU: before torch is first imported, ``CUDA_VISIBLE_DEVICES`` is narrowed
to the ``LOCAL_RANK``-th visible device, so torch and onnxruntime (which would otherwise both pick
device 0) see exactly one GPU, as ``cuda``, and every rank's resolved ``--device`` (part of the
configuration hash that all shards must share) is the same ``cuda``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# How long rank 0 waits at the barrier for the slowest rank (a release evaluation can take hours).
BARRIER_TIMEOUT = _dt.timedelta(hours=24)


@dataclass(frozen=True)
class RankInfo:
    """This process's place in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int


def torchrun_rank(environ: dict[str, str] | None = None) -> RankInfo | None:
    """The rank of this process when torchrun started it with more than one process, else None.

    torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and ``TORCHELASTIC_RUN_ID``); a
    world of one is an ordinary run.
    """
    env = os.environ if environ is None else environ
    if "TORCHELASTIC_RUN_ID" not in env and "MASTER_ADDR" not in env:
        return None
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
    except (KeyError, ValueError):
        return None
    return RankInfo(rank, world, local) if world > 1 else None


def pin_local_gpu(info: RankInfo) -> None:
    """Narrow ``CUDA_VISIBLE_DEVICES`` to this rank's GPU before torch is imported: the
    ``LOCAL_RANK``-th visible GPU (modulo their number, so more ranks than GPUs share them).

    The GPUs are those ``CUDA_VISIBLE_DEVICES`` lists, else the NVIDIA driver's (Linux
    ``/proc/driver/nvidia/gpus``); with none found, or once torch is imported, nothing changes.
    """
    if "torch" in sys.modules:
        log.debug("torch already imported: rank %d keeps CUDA_VISIBLE_DEVICES as it is", info.rank)
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = [d.strip() for d in visible.split(",") if d.strip()]
    else:
        try:
            devices = [str(i) for i in range(len(os.listdir("/proc/driver/nvidia/gpus")))]
        except OSError:
            devices = []
    if devices:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[info.local_rank % len(devices)]
        log.info("rank %d uses GPU %s", info.rank, os.environ["CUDA_VISIBLE_DEVICES"])


@contextmanager
def process_group(info: RankInfo) -> Iterator[Any]:
    """The gloo process group of the job (torchrun's ``env://`` rendezvous), destroyed on exit."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method="env://", rank=info.rank, world_size=info.world_size,
                            timeout=BARRIER_TIMEOUT)
    try:
        yield dist
    finally:
        dist.destroy_process_group()


def failed_ranks(dist: Any, failed: bool) -> int:
    """How many ranks failed (every rank calls this once its shard is done or has failed): the
    barrier before rank 0 merges, which also tells every rank whether the merge can happen."""
    import torch

    flag = torch.tensor([1 if failed else 0], dtype=torch.int64)
    dist.all_reduce(flag, op=dist.ReduceOp.SUM)
    return int(flag.item())
