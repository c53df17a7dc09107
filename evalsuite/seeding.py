"""Per-sample randomness that does not depend on batch size, order or sharding.

Every random draw a condition makes for a sample comes from a generator seeded by
(run seed, condition key, sample id). Two runs that shard or batch differently therefore
perturb each sample identically.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def sample_seed(seed: int, key: str, sample_id: str) -> int:
    """A 63-bit seed derived from (seed, condition key, sample id) with BLAKE2b."""
    h = hashlib.blake2b(f"{int(seed)}\x1f{key}\x1f{sample_id}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


def sample_seeds(seed: int, key: str, sample_ids: Sequence[str]) -> np.ndarray:
    """Vector of :func:`sample_seed` values, one per sample id (int64)."""
    return np.array([sample_seed(seed, key, str(s)) for s in sample_ids], dtype=np.int64)


def torch_generators(seed: int, key: str, sample_ids: Sequence[str], device: object = "cpu") -> list:
    """One ``torch.Generator`` per sample on ``device``, seeded by :func:`sample_seed`."""
    import torch

    gens = []
    for s in sample_seeds(seed, key, sample_ids):
        g = torch.Generator(device=device)
        g.manual_seed(int(s))
        gens.append(g)
    return gens
