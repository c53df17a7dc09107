"""Per-sample random streams for corruptions.

Every sample gets its own generators, seeded from
``evalsuite.seeding.sample_seed(seed, "corruption/<name>/<severity>", sample_id)``, so a
sample is corrupted identically whatever batch or shard it arrives in. Two streams per sample:

- a CPU ``torch.Generator`` for the few scalar parameters (motion angle, frost texture and
  crop offset): these are identical on every device;
- a generator on the batch's device for pixel fields (noise, fractals, displacement and
  liquid fields, glass-blur offsets). CPU and CUDA generators are different algorithms, so
  the *fields* of a CUDA run differ from a CPU run (each is reproducible on its own kind of
  device); the distributions are the same.

On the CPU the per-sample fields are filled in parallel on the shared thread pool (each
sample has its own generator, so the result does not depend on the order or the threads).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

_MASK63 = (1 << 63) - 1


def _fill_each(out: torch.Tensor, gens: Sequence[torch.Generator], fill) -> torch.Tensor:
    """``fill(out[i], gens[i])`` for every sample: on the thread pool for CPU tensors (torch's
    generator kernels are serial and release the GIL), in order on other devices."""
    if out.device.type == "cpu" and len(gens) > 1:
        from evalsuite.parallel import parallel_for

        parallel_for(lambda i: fill(out[i], gens[i]), len(gens))
    else:
        for i, g in enumerate(gens):
            fill(out[i], g)
    return out


def _mix(seed: int) -> int:
    """SplitMix64 finaliser: an independent seed for the device stream of the same sample."""
    z = (int(seed) + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & _MASK63


class SampleRandom:
    """The random streams of one batch: one host and one device generator per sample."""

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> None:
        self.seeds = [int(s) for s in seeds]
        self.device = torch.device(device)
        self._host: list[torch.Generator] | None = None
        self._field: list[torch.Generator] | None = None

    @classmethod
    def for_ids(cls, seed: int, key: str, ids: Sequence[str], device: torch.device | str = "cpu") -> SampleRandom:
        from evalsuite.seeding import sample_seeds

        return cls(sample_seeds(seed, key, [str(i) for i in ids]).tolist(), device)

    def __len__(self) -> int:
        return len(self.seeds)

    @property
    def host(self) -> list[torch.Generator]:
        if self._host is None:
            self._host = [torch.Generator().manual_seed(s) for s in self.seeds]
        return self._host

    @property
    def field(self) -> list[torch.Generator]:
        if self._field is None:
            self._field = [torch.Generator(device=self.device).manual_seed(_mix(s)) for s in self.seeds]
        return self._field

    # -- scalar parameters (host stream) ------------------------------------------------------
    def host_uniform(self, low: float, high: float) -> np.ndarray:
        """One float64 uniform in [low, high) per sample."""
        u = np.array([torch.rand((), generator=g, dtype=torch.float64).item() for g in self.host])
        return low + (high - low) * u

    def host_randint(self, low: int, high: Sequence[int] | int) -> np.ndarray:
        """One integer in [low, high_i) per sample (``high`` may differ per sample)."""
        highs = [int(high)] * len(self) if np.isscalar(high) else [int(h) for h in high]
        return np.array(
            [int(torch.randint(low, h, (), generator=g).item()) for g, h in zip(self.host, highs, strict=True)],
            dtype=np.int64,
        )

    # -- pixel fields (device stream) ---------------------------------------------------------
    def normal(self, shape: Sequence[int], mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
        out = torch.empty((len(self), *shape), device=self.device, dtype=torch.float32)
        return _fill_each(out, self.field, lambda o, g: o.normal_(mean, std, generator=g))

    def uniform(self, shape: Sequence[int]) -> torch.Tensor:
        """Uniform [0, 1) float32 field per sample."""
        out = torch.empty((len(self), *shape), device=self.device, dtype=torch.float32)
        return _fill_each(out, self.field, lambda o, g: o.uniform_(0.0, 1.0, generator=g))

    def uniform64(self, shape: Sequence[int]) -> torch.Tensor:
        """Uniform [0, 1) float64 field per sample (for values later scaled by large constants)."""
        out = torch.empty((len(self), *shape), device=self.device, dtype=torch.float64)
        return _fill_each(out, self.field, lambda o, g: o.uniform_(0.0, 1.0, generator=g))

    def randbits(self, bits: int, shape: Sequence[int]) -> torch.Tensor:
        """Uniform integers in ``[0, 2**bits)`` per sample (int8), ``32 // bits`` of them per 32-bit draw."""
        per = 32 // bits
        count = 1
        for s in shape:
            count *= int(s)
        words = -(-count // per)
        packed = torch.empty((len(self), words), device=self.device, dtype=torch.int64)
        _fill_each(packed, self.field, lambda o, g: o.random_(0, 2**32, generator=g))
        shifts = torch.arange(per, device=self.device, dtype=torch.int32) * bits
        vals = (packed.to(torch.int32).unsqueeze(-1) >> shifts).bitwise_and_((1 << bits) - 1).to(torch.int8)
        return vals.view(len(self), words * per)[:, :count].reshape(len(self), *shape)

    def randint(self, low: int, high: int, shape: Sequence[int], dtype: torch.dtype = torch.int64) -> torch.Tensor:
        """Integers in [low, high) per sample."""
        out = torch.empty((len(self), *shape), device=self.device, dtype=dtype)
        return _fill_each(out, self.field, lambda o, g: o.random_(low, high, generator=g))
