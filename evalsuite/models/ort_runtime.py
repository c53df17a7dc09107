"""onnxruntime on the device where the batch already is: IO binding, and which wheel is installed.

The ONNX adapter normalises a batch where it lives. On a GPU, handing that batch to
``session.run`` as a NumPy array would copy it to the host and onnxruntime would copy it back
for its CUDA provider: two PCIe transfers per batch for nothing. :func:`run_bound` binds the
torch tensor itself (DLPack where this onnxruntime has it, else its data pointer) and lets the
provider allocate the output on the same device; only the N x C logits come back to the host,
which :meth:`Model.predict` returns anyway. The same code path runs on CPU tensors, which is how
the test suite checks it against ``session.run`` without a GPU.

onnxruntime ships as ``onnxruntime`` (CPU) and ``onnxruntime-gpu`` (CUDA, TensorRT); both
install the same ``onnxruntime`` package, so with both present one has overwritten the other's
files and the providers on offer are whichever wrote last. :func:`conflicting_distributions`
names them so the adapter can say so instead of failing obscurely (``make setup GPU=1`` installs
exactly one; docs/gpu.md).
"""

from __future__ import annotations

import logging
from importlib import metadata
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Wheels that provide the ``onnxruntime`` package; at most one may be installed.
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino",
                     "onnxruntime-qnn", "onnxruntime-rocm", "onnxruntime-training")

_TORCH_TO_NUMPY = {"torch.float32": np.float32, "torch.float16": np.float16, "torch.float64": np.float64}


def installed_distributions() -> list[str]:
    """The installed wheels (of :data:`ORT_DISTRIBUTIONS`) that provide ``import onnxruntime``."""
    found = []
    for name in ORT_DISTRIBUTIONS:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def conflicting_distributions() -> str | None:
    """A one-line warning when two onnxruntime wheels are installed side by side, else None."""
    found = installed_distributions()
    if len(found) < 2:
        return None
    return (f"{' and '.join(found)} are both installed and overwrite each other's files; keep one "
            f"(`make setup GPU=1` installs onnxruntime-gpu alone, `make setup` the CPU onnxruntime)")


def run_bound(session: Any, input_name: str, output_name: str, x: Any) -> np.ndarray:
    """Run ``session`` on the torch tensor ``x`` where it lives; the output as a host array.

    ``x`` must already be the model's input (normalised, in its layout and dtype). It is bound
    without a copy, the output is allocated by the provider on ``x``'s device and copied to the
    host once. On CUDA the torch stream is synchronised first, because onnxruntime runs on its own
    stream and would otherwise read ``x`` before torch has finished writing it.
    """
    import onnxruntime as ort
    import torch

    t = x.detach().contiguous()
    device_type = "cuda" if t.device.type == "cuda" else "cpu"
    device_id = int(t.device.index or 0) if device_type == "cuda" else 0
    if device_type == "cuda":
        torch.cuda.current_stream(t.device).synchronize()
    binding = session.io_binding()
    if hasattr(ort.OrtValue, "from_dlpack"):
        binding.bind_ortvalue_input(input_name, ort.OrtValue.from_dlpack(t))
    else:
        element_type = _TORCH_TO_NUMPY.get(str(t.dtype))
        if element_type is None:
            from evalsuite.errors import ModelError

            raise ModelError(f"cannot bind a {t.dtype} tensor to onnxruntime input {input_name!r}")
        binding.bind_input(input_name, device_type, device_id, element_type, list(t.shape), t.data_ptr())
    binding.bind_output(output_name, device_type, device_id)
    session.run_with_iobinding(binding)
    binding.synchronize_outputs()
    return np.asarray(binding.copy_outputs_to_cpu()[0])
