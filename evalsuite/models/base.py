"""The model contract: logits for float NCHW RGB in [0, 1], preprocessing inside.

Geometric preprocessing (resize, crop) is described by :class:`ModelInfo` and applied by the
data loader; value preprocessing (channel order, mean/std) happens inside :meth:`Model.predict`
and inside the module from :meth:`Model.torch_module`, so attacks and corruptions work in
[0, 1] pixel space.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from evalsuite.errors import ModelError


@dataclass(frozen=True)
class ModelInfo:
    """What evalsuite knows about a model, and where each fact came from.

    Attributes:
        input_size: (H, W) the model consumes.
        resize: shorter side to resize to before a centre crop of ``input_size``;
            ``None`` means resize straight to ``input_size`` (no crop).
        interpolation: ``bilinear`` | ``bicubic`` | ``nearest`` (also ``lanczos``, ``box``, ``hamming``).
        mean, std: per-channel normalisation applied to [0, 1] RGB (in ``channel_order``).
        channel_order: ``RGB`` or ``BGR`` (what the network expects).
        class_names: one name per output logit.
        format: ``onnx`` | ``torchscript`` | ``torch.export`` | ``timm``.
        source: the path or name the user gave.
        sha256: hash of the model file (or of the checkpoint for ``timm:``), for provenance.
        metadata_source: where preprocessing came from (``metadata_props``, ``sidecar``, ``flags``, ...).
        temperature: a temperature already baked into the logits (1.0 when none).
        layout: ``NCHW`` or ``NHWC``, how the network's input tensor is laid out (``predict``
            still takes NCHW; the adapter permutes).
        channels: 3 (RGB) or 1 (grayscale: the adapter feeds BT.601 luma, see :func:`luma`).
        output_name: the model output read as logits (ONNX: named; ``None`` when the format
            has no output names).
    """

    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: tuple[str, ...]
    format: str
    source: str
    sha256: str
    resize: int | None = None
    interpolation: str = "bilinear"
    channel_order: str = "RGB"
    metadata_source: str = "unknown"
    temperature: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)
    layout: str = "NCHW"
    channels: int = 3
    output_name: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d["class_names"] = list(self.class_names)
        d["num_classes"] = self.num_classes
        return d


#: ITU-R BT.601 luma weights for R, G, B: the formula of Pillow's ``convert("L")``.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def luma(x: Any) -> Any:
    """``N x 1 x H x W`` BT.601 luma of a float ``N x 3 x H x W`` RGB batch (numpy or torch).

    What a single-channel (grayscale) network is fed: Pillow's ``convert("L")`` computes the same
    weighted sum in 8-bit integers, so on 8-bit images the two agree to within rounding.
    """
    r, g, b = LUMA_WEIGHTS
    return x[:, 0:1] * r + x[:, 1:2] * g + x[:, 2:3] * b


class Model(ABC):
    """A classifier evalsuite can evaluate. Subclasses: ONNX, TorchScript, torch.export, timm."""

    info: ModelInfo
    device: str  # "cpu" or "cuda[:k]"

    @abstractmethod
    def predict(self, x: Any) -> np.ndarray:
        """Logits (float32 ``N x C`` numpy) for a float ``N x 3 x H x W`` tensor/array in [0, 1]."""

    def torch_module(self) -> Any:
        """A differentiable ``torch.nn.Module`` mapping [0, 1] NCHW RGB to logits.

        Needed by white-box attacks. Raises :class:`~evalsuite.errors.ModelError` saying why
        when none can be had.
        """
        raise ModelError(f"{self.info.format} model {self.info.source} offers no differentiable torch module")

    def checked_torch_module(self, inputs: Any = None, *, tolerance: float, device: str | None = None) -> tuple[Any, Any]:
        """The differentiable module white-box attacks use, checked against :meth:`predict`.

        Returns ``(module, check)``: ``module`` maps [0, 1] NCHW RGB to logits in eval mode;
        ``check`` (``None`` when ``inputs`` is ``None``) is ``{used, max_abs_diff, n_checked,
        tolerance, notes}``, where ``used`` says the module is a converted graph (the ONNX
        gradient bridge, see :class:`~evalsuite.models.onnx_model.OnnxModel`) rather than the
        model's own module. Raises :class:`~evalsuite.errors.ModelError` with the reason when no
        module can be had, or when its logits on ``inputs`` differ from :meth:`predict`'s by more
        than ``tolerance x max(1, max |logit|)`` (a :class:`ModuleMismatchError` carrying the
        ``check``). ``device``: where a converted graph is built (the model's own module stays
        where it is).
        """
        try:
            module = self.torch_module()
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure means "no gradients": callers fall back
            raise ModelError(f"torch_module() failed ({type(exc).__name__}: {str(exc)[:160]})") from None
        module = module.eval()
        if inputs is None:
            return module, None
        from evalsuite.models.onnx_bridge import logit_difference

        diff, scale = logit_difference(module, self, inputs)
        check = {"used": False, "max_abs_diff": diff, "n_checked": int(inputs.shape[0]),
                 "tolerance": tolerance, "notes": ["model's own torch module"]}
        if not diff <= tolerance * max(1.0, scale):
            raise ModuleMismatchError(
                f"the model's torch module disagrees with its predict() by up to {diff:.3g} on real inputs", check
            )
        return module, check


class ModuleMismatchError(ModelError):
    """A differentiable module whose logits disagree with ``predict()``; ``check`` holds the comparison."""

    def __init__(self, message: str, check: dict[str, Any]) -> None:
        super().__init__(message)
        self.check = check
