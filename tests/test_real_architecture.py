"""A real architecture end to end: a timm network exported with plain ``torch.onnx.export``.

The network is random-initialised (``pretrained=False``: nothing is downloaded), so its
accuracy means nothing; what is tested is that the graph a real exporter writes from a real
architecture loads, inspects, runs the quick suite on real photographs (scikit-image's and
scikit-learn's sample images, written as JPEG and PNG) and that the ONNX gradient bridge agrees
with onnxruntime on them -- for the usual NCHW RGB export, a channels-last (NHWC) export and a
single-channel (grayscale) one. Heavier architectures and the dynamo exporter: the ``slow`` test.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

SIZE = 64
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLASSES = ["animal", "thing"]


def _photos() -> dict[str, tuple[str, np.ndarray]]:
    """Real photographs bundled with scikit-image and scikit-learn: name -> (class, H x W x 3 uint8)."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    return {
        "astronaut": ("animal", skimage.data.astronaut()),
        "chelsea": ("animal", skimage.data.chelsea()),
        "coffee": ("thing", skimage.data.coffee()),
        "rocket": ("thing", skimage.data.rocket()),
        "china": ("thing", china),
        "flower": ("animal", flower),
    }


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    """A class-per-folder dataset of six real photographs, half JPEG and half PNG."""
    from PIL import Image

    root = tmp_path_factory.mktemp("photos") / "data"
    for i, (name, (cls, img)) in enumerate(sorted(_photos().items())):
        (root / cls).mkdir(parents=True, exist_ok=True)
        ext = ".jpg" if i % 2 == 0 else ".png"
        Image.fromarray(img).save(root / cls / f"{name}{ext}", **({"quality": 90} if ext == ".jpg" else {}))
    return root


class _ChannelsLast:
    """Builds a module that takes NHWC and permutes to the NCHW network inside (what tf2onnx-style
    exports look like to evalsuite: the graph's input is ``N x H x W x C``)."""

    @staticmethod
    def wrap(net):
        import torch

        class NHWC(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                return self.inner(x.permute(0, 3, 1, 2))

        return NHWC(net).eval()


def export_timm(path: Path, name: str, *, layout: str = "NCHW", channels: int = 3, dynamo: bool = False,
                opset: int = 17, **model_kwargs) -> tuple[Path, object]:
    """``timm.create_model(name, pretrained=False)`` exported by ``torch.onnx.export`` with
    evalsuite metadata that says nothing about layout or channels (they are read off the shape).
    Returns (path, the torch network taking the normalised input in the exported layout)."""
    import timm
    import torch

    from evalsuite.models.export import preprocessing_dict, write_metadata

    torch.manual_seed(0)
    net = timm.create_model(name, pretrained=False, num_classes=len(CLASSES), in_chans=channels,
                            **model_kwargs).eval()
    if layout == "NHWC":
        net = _ChannelsLast.wrap(net)
    shape = (2, SIZE, SIZE, channels) if layout == "NHWC" else (2, channels, SIZE, SIZE)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        kwargs = {} if dynamo else {"dynamic_axes": {"input": {0: "batch"}, "logits": {0: "batch"}}}
        if dynamo:
            kwargs["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}}
        torch.onnx.export(net, (torch.rand(*shape),), str(path), input_names=["input"], output_names=["logits"],
                          opset_version=opset, dynamo=dynamo, **kwargs)
    mean, std = (MEAN, STD) if channels == 3 else ((0.449,) * 3, (0.226,) * 3)
    write_metadata(path, preprocessing_dict(input_size=(SIZE, SIZE), resize=72, mean=mean, std=std,
                                            class_names=CLASSES))
    return path, net


def _real_batch(model, folder: Path):
    """The photographs as the run feeds them: decoded, resized and cropped by the loader, NCHW in [0, 1]."""
    import torch

    from evalsuite.data import open_dataset
    from evalsuite.data.loader import load_images

    ds = open_dataset(str(folder))
    info = model.info
    images = load_images(ds, np.arange(len(ds)), input_size=info.input_size, resize=info.resize,
                         interpolation=info.interpolation, workers=1)
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def _torch_reference(net, x, layout: str, channels: int):
    """What the network computes on [0, 1] RGB NCHW ``x`` with the recorded preprocessing, in torch."""
    import torch

    from evalsuite.models.base import luma

    if channels == 1:
        x = (luma(x) - 0.449) / 0.226
    else:
        x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    if layout == "NHWC":
        x = x.permute(0, 2, 3, 1)
    with torch.no_grad():
        return net(x).numpy()


VARIANTS = [("NCHW", 3), ("NHWC", 3), ("NCHW", 1)]


@pytest.mark.parametrize("layout,channels", VARIANTS, ids=["nchw-rgb", "nhwc-rgb", "nchw-gray"])
def test_timm_export_inspect_run_and_bridge(tmp_path, photo_folder, capsys, layout, channels):
    """resnet10t at 64 px through inspect, the quick suite on real photos, and the gradient bridge."""
    from evalsuite.cli import main
    from evalsuite.models import load_model

    path, net = export_timm(tmp_path / "resnet10t.onnx", "resnet10t", layout=layout, channels=channels)
    model = load_model(str(path), device="cpu")
    assert (model.info.layout, model.info.channels, model.info.output_name) == (layout, channels, "logits")
    assert model.info.extra["metadata_fields"]["layout"] == "model input shape"

    x = _real_batch(model, photo_folder)
    assert x.shape == (6, 3, SIZE, SIZE)
    ours = model.predict(x)
    np.testing.assert_allclose(ours, _torch_reference(net, x, layout, channels), rtol=0, atol=1e-4)

    module, check = model.checked_torch_module(x, tolerance=1e-3, device="cpu")
    assert check["used"] and check["n_checked"] == 6 and check["max_abs_diff"] <= 1e-3 * max(1.0, np.abs(ours).max())
    if layout == "NHWC":
        assert any("NHWC" in n for n in check["notes"])
    if channels == 1:
        assert any("luma" in n for n in check["notes"])
    xg = x[:2].clone().requires_grad_(True)  # gradients flow through the permute / luma to the RGB pixels
    module(xg).sum().backward()
    assert xg.grad is not None and xg.grad.shape == (2, 3, SIZE, SIZE) and float(xg.grad.abs().sum()) > 0

    assert main(["inspect", str(path), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert f"Input layout          {layout}" in text and f"Channels              {channels}" in text
    assert "Output used           logits" in text

    out = tmp_path / "run"
    code = main(["run", str(path), "--data", str(photo_folder), "--suite", "quick", "--device", "cpu",
                 "--out", str(out)])
    assert code in (0, 1)  # a random network may fail the default policy's accuracy gate; never exit 2/3
    html = (out / "scorecard.html").read_text(encoding="utf-8")
    assert f"{layout} input" in html and "output <code>logits</code>" in html
    assert ("grayscale (BT.601 luma" in html) == (channels == 1)
    import json

    results = json.loads((out / "results.json").read_text())
    assert results["model"]["layout"] == layout and results["model"]["channels"] == channels
    assert results["metrics"]["clean"]["accuracy"]["n"] == 6


ARCHITECTURES = ["mobilenetv3_small_050", "efficientnet_b0", "convnext_atto", "regnetx_002", "ghostnet_050",
                 "lcnet_050", "resnet18", "vit_tiny_patch16_224", "mobilevitv2_050", "efficientvit_b0", "levit_128s",
                 "fastvit_t8", "edgenext_xx_small", "repvgg_a0"]
MODEL_KWARGS = {"vit_tiny_patch16_224": {"img_size": SIZE}, "levit_128s": {"img_size": SIZE}}


@pytest.mark.slow
@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_more_architectures_bridge_or_fallback(tmp_path, photo_folder, name, dynamo):
    """More architectures, both exporters: onnxruntime matches torch, and the bridge either agrees
    with onnxruntime or refuses itself with a one-line reason (the suite then falls back to
    black-box attacks). docs/models.md lists what this measured."""
    from evalsuite.errors import ModelError
    from evalsuite.models import load_model

    try:
        path, net = export_timm(tmp_path / f"{name}.onnx", name, dynamo=dynamo, opset=18 if dynamo else 17,
                                **MODEL_KWARGS.get(name, {}))
    except Exception as exc:  # noqa: BLE001 - an exporter failure is the exporter's, reported as a skip
        pytest.skip(f"torch.onnx.export(dynamo={dynamo}) fails on {name}: {type(exc).__name__}")
    model = load_model(str(path), device="cpu")
    x = _real_batch(model, photo_folder)
    np.testing.assert_allclose(model.predict(x), _torch_reference(net, x, "NCHW", 3), rtol=0, atol=1e-3)
    try:
        _, check = model.checked_torch_module(x, tolerance=1e-3, device="cpu")
    except ModelError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("ONNX gradient bridge")
        print(f"{name} dynamo={dynamo}: falls back ({exc})")
        return
    assert check["max_abs_diff"] <= 1e-3 * max(1.0, float(np.abs(model.predict(x)).max()))
    print(f"{name} dynamo={dynamo}: white-box, max |diff| {check['max_abs_diff']:.2g}")


@pytest.mark.parametrize("fmt", ["torchscript", "pt2", "timm"])
def test_torch_formats_of_a_real_architecture(tmp_path, photo_folder, fmt):
    """resnet10t saved as TorchScript (``torch.jit.trace`` + extra file), ``.pt2`` (``torch.export``)
    and a safetensors checkpoint for ``timm:resnet10t``: the logits on the photographs match the torch
    network's, and the white-box module agrees with ``predict`` and passes gradients to the pixels."""
    import json

    import timm
    import torch

    from evalsuite.models import load_model
    from evalsuite.models.export import preprocessing_dict
    from evalsuite.models.metadata import METADATA_KEY

    torch.manual_seed(0)
    net = timm.create_model("resnet10t", pretrained=False, num_classes=len(CLASSES)).eval()
    meta = json.dumps(preprocessing_dict(input_size=(SIZE, SIZE), resize=72, mean=MEAN, std=STD, class_names=CLASSES))
    example = torch.rand(2, 3, SIZE, SIZE)
    checkpoint = None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            spec = str(tmp_path / "m.pt")
            torch.jit.save(torch.jit.trace(net, example), spec, _extra_files={METADATA_KEY: meta})
        elif fmt == "pt2":
            spec = str(tmp_path / "m.pt2")
            program = torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch", max=1024)},))
            torch.export.save(program, spec, extra_files={METADATA_KEY: meta})
        else:
            from safetensors.torch import save_file

            checkpoint = str(tmp_path / "w.safetensors")
            save_file(net.state_dict(), checkpoint)
            (tmp_path / "w.json").write_text(meta)  # the checkpoint's sidecar (64 px, not timm's 224)
            spec = "timm:resnet10t"
    model = load_model(spec, device="cpu", checkpoint=checkpoint)
    assert model.info.input_size == (SIZE, SIZE) and model.info.class_names == tuple(CLASSES)
    x = _real_batch(model, photo_folder)
    ours = model.predict(x)
    np.testing.assert_allclose(ours, _torch_reference(net, x, "NCHW", 3), rtol=0, atol=1e-4)
    module, check = model.checked_torch_module(x, tolerance=1e-3, device="cpu")
    assert check["used"] is False and check["max_abs_diff"] <= 1e-5
    xg = x[:2].clone().requires_grad_(True)
    module(xg).sum().backward()
    assert xg.grad is not None and float(xg.grad.abs().sum()) > 0
