"""What runs the model while it is measured: threads, execution providers, device.

Measurements use the model object that served the run's predictions. ``--target-threads N``
reproduces a smaller machine on a bigger one for the measurement only, never for the
predictions:

- torch models: ``torch.set_num_threads(N)`` around the measurement, restored afterwards;
- ONNX models: a second onnxruntime session on the same file, built with the serving
  session's execution providers (and their options) and the session options evalsuite always
  uses (:func:`evalsuite.models.onnx_model.open_session`: one inter-op thread, no spinning),
  except ``intra_op_num_threads = N``. The model is a shallow copy that differs from the
  serving one in its session only, so ``predict`` runs the same normalisation code.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

from evalsuite.errors import ModelError

log = logging.getLogger(__name__)


def _innermost(model: Any) -> Any:
    """The model under a :class:`~evalsuite.models.outputs.ProbabilityOutputs` wrapper."""
    inner = model.__dict__.get("inner") if hasattr(model, "__dict__") else None
    return _innermost(inner) if inner is not None else model


def is_onnx(model: Any) -> bool:
    """Whether the (innermost) model is run by an onnxruntime session."""
    return getattr(_innermost(model), "session", None) is not None and getattr(model.info, "format", "") == "onnx"


def onnx_threads(session: Any) -> int:
    """The intra-op thread count of an onnxruntime session (0 means onnxruntime's default: the cores)."""
    n = int(session.get_session_options().intra_op_num_threads)
    return n if n > 0 else (os.cpu_count() or 1)


def _session_with_threads(path: Any, serving: Any, threads: int) -> Any:
    import onnxruntime as ort

    from evalsuite.models.onnx_model import fp16_graph, session_options

    opts = session_options(threads)  # the serving session's options but the thread count
    given = serving.get_provider_options()
    providers = [(p, dict(given.get(p, {}))) for p in serving.get_providers()]
    source: Any = str(path)
    if getattr(serving, "evalsuite_precision", "float32") == "float16":  # the graph that serves, not the file's
        source = fp16_graph(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            session = ort.InferenceSession(source, sess_options=opts, providers=providers)
            session.evalsuite_precision = getattr(serving, "evalsuite_precision", "float32")
            return session
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own kinds
        raise ModelError(f"{path}: cannot open a measurement session with {threads} threads ({str(exc)[:160]})") from None


def measurement_model(model: Any, threads: int | None) -> Any:
    """The model to time: ``model`` itself, or (ONNX with ``threads``) a copy with its own session."""
    if threads is None or not is_onnx(model):
        return model
    inner = _innermost(model)
    twin = copy.copy(inner)
    twin.session = _session_with_threads(inner.path, inner.session, threads)
    if model is not inner:  # re-wrap a declared-probabilities model the same way
        from evalsuite.models.outputs import ProbabilityOutputs

        return ProbabilityOutputs(twin)
    return twin


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` inside the block (nothing when ``threads`` is None)."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def describe_runtime(model: Any, target_threads: int | None) -> dict[str, Any]:
    """Threads, providers, device and runtime version of ``model`` as it is measured (call it
    with the measurement model, inside :func:`torch_threads` for torch models)."""
    from importlib import metadata

    inner = _innermost(model)
    info: dict[str, Any] = {"format": model.info.format, "device": str(getattr(model, "device", "cpu")),
                            "target_threads": target_threads}
    if is_onnx(model):
        import onnxruntime as ort

        info.update(runtime=f"onnxruntime {ort.__version__}", threads=onnx_threads(inner.session),
                    providers=list(inner.session.get_providers()))
    else:
        import torch

        try:
            version = metadata.version("torch")
        except metadata.PackageNotFoundError:
            version = torch.__version__
        info.update(runtime=f"torch {version}", threads=int(torch.get_num_threads()), providers=[])
    return info
