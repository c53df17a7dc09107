"""Input layouts real exports have: NHWC, single-channel (grayscale), several outputs.

The model contract stays ``predict(x)`` on float NCHW RGB in [0, 1]; the adapters permute to
NHWC, take BT.601 luma for one-channel networks and read the output ``--output`` names. Each is
checked against the torch network it was exported from, against Pillow's ``convert("L")`` on
real pixels, and through the gradient bridge.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from evalsuite.errors import ModelError, UsageError
from evalsuite.models import load_model
from evalsuite.models.metadata import input_layout

MEAN, STD = 0.5, 0.25


def _net(channels: int, nhwc: bool):
    """A small conv net with two outputs (logits of 5 classes, a 4-wide feature) in the given layout."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(channels, 4, 3)
            self.fc = nn.Linear(4, 5)

        def forward(self, x):
            if nhwc:
                x = x.permute(0, 3, 1, 2)
            feat = torch.relu(self.conv(x)).mean((2, 3))
            return self.fc(feat), feat

    torch.manual_seed(channels + 10 * nhwc)
    return Net().eval()


def _export(tmp_path, channels=3, nhwc=False, *, spatial=(16, 16), meta=None, name=None):
    import torch

    from evalsuite.models.export import preprocessing_dict, write_metadata

    net = _net(channels, nhwc)
    h, w = spatial
    shape = (2, h, w, channels) if nhwc else (2, channels, h, w)
    path = tmp_path / (name or f"m{channels}{'h' if nhwc else 'c'}.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(*shape),), str(path), input_names=["x"], output_names=["logits", "feat"],
                          dynamic_axes={"x": {0: "n"}}, opset_version=17, dynamo=False)
    d = preprocessing_dict(input_size=spatial, mean=[MEAN] * 3, std=[STD] * 3, class_names=list("abcde"))
    write_metadata(path, {**d, **(meta or {})})
    return path, net


def _reference(net, x, channels, nhwc, output=0):
    import torch

    t = torch.from_numpy(x)
    if channels == 1:
        t = 0.299 * t[:, 0:1] + 0.587 * t[:, 1:2] + 0.114 * t[:, 2:3]
    t = (t - MEAN) / STD
    if nhwc:
        t = t.permute(0, 2, 3, 1)
    with torch.no_grad():
        return net(t)[output].numpy()


# ---------------------------------------------------------------------------------------------
# Reading the layout off the shape
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,layout,channels", [
    (["N", 3, 224, 224], "NCHW", 3),
    (["N", 1, 28, 28], "NCHW", 1),
    ([1, 224, 224, 3], "NHWC", 3),  # tf2onnx / Keras
    (["N", 28, 28, 1], "NHWC", 1),
    ([1, 240, 320, 3], "NHWC", 3),  # not square, but 240 cannot be a channel count
    (["N", "H", "W", 3], "NHWC", 3),  # dynamic spatial size, channels last
    (["N", 3, "H", "W"], "NCHW", 3),
    (["N", "C", "H", "W"], "NCHW", None),  # all symbolic: the contract (3 channels assumed)
])
def test_layout_read_off_the_shape(shape, layout, channels):
    got = input_layout(shape, "m.onnx")
    assert (got.layout, got.channels) == (layout, channels)
    hw = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    assert (got.height, got.width) == tuple(d if isinstance(d, int) else None for d in hw)


def test_ambiguous_and_impossible_shapes():
    with pytest.raises(ModelError, match="reads as NCHW and as NHWC; pass --layout nchw or --layout nhwc"):
        input_layout(["N", 3, "H", 3], "m.onnx")
    assert input_layout(["N", 3, "H", 3], "m.onnx", "NHWC").layout == "NHWC"
    assert input_layout(["N", 3, "H", 3], "m.onnx", "NCHW").height is None
    with pytest.raises(ModelError, match="224 channels in NCHW, expected 1 or 3 \\(it reads as NHWC"):
        input_layout([1, 224, 224, 3], "m.onnx", "NCHW")
    with pytest.raises(ModelError, match="neither dimension 1"):
        input_layout(["N", 4, 8, 8], "m.onnx")  # RGBA: refused, not guessed
    with pytest.raises(ModelError, match="has rank 3"):
        input_layout(["N", 8, 8], "m.onnx")


# ---------------------------------------------------------------------------------------------
# ONNX: NHWC and grayscale against the torch network
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels,nhwc", [(3, True), (1, False), (1, True)], ids=["nhwc", "gray", "gray-nhwc"])
def test_onnx_layouts_match_torch_and_bridge(tmp_path, channels, nhwc):
    import torch

    path, net = _export(tmp_path, channels, nhwc)
    model = load_model(str(path), device="cpu")
    assert model.info.layout == ("NHWC" if nhwc else "NCHW") and model.info.channels == channels
    d = model.info.to_dict()
    assert (d["layout"], d["channels"], d["output_name"]) == (model.info.layout, channels, "logits")
    assert model.info.metadata_source == "metadata_props"  # shape facts do not change where preprocessing came from
    x = np.random.default_rng(1).random((7, 3, 16, 16), dtype=np.float32)
    ref = _reference(net, x, channels, nhwc)
    np.testing.assert_allclose(model.predict(x), ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(model.predict(torch.from_numpy(x)), ref, rtol=0, atol=1e-5)
    module, check = model.checked_torch_module(torch.from_numpy(x), tolerance=1e-4, device="cpu")
    assert check["used"] and check["max_abs_diff"] < 1e-5
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), ref, rtol=0, atol=1e-5)
    with pytest.raises(ModelError, match="expects N x 3 x 16 x 16"):
        model.predict(x[:, :1])  # the contract stays RGB, whatever the network takes


def test_declared_layout_and_channels_are_checked(tmp_path):
    # metadata layout decides an ambiguous shape; one that contradicts the shape is refused
    path, net = _export(tmp_path, 3, True, spatial=(3, 3), meta={"layout": "NHWC"})  # N x 3 x 3 x 3
    model = load_model(str(path), device="cpu")
    assert model.info.layout == "NHWC" and model.info.extra["metadata_fields"]["layout"] == "metadata_props"
    x = np.random.default_rng(2).random((2, 3, 3, 3), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x), _reference(net, x, 3, True), atol=1e-5)
    path2, _ = _export(tmp_path, 3, True, spatial=(3, 3), name="amb.onnx")
    with pytest.raises(ModelError, match="reads as NCHW and as NHWC"):
        load_model(str(path2), device="cpu")
    assert load_model(str(path2), device="cpu", overrides={"layout": "nhwc"}).info.extra["metadata_fields"]["layout"] == "flags"
    with pytest.raises(UsageError, match="--layout 'NWHC' is invalid; expected nchw or nhwc"):
        load_model(str(path2), device="cpu", overrides={"layout": "NWHC"})
    wrong, _ = _export(tmp_path, 1, False, meta={"channels": 3}, name="wrong.onnx")
    with pytest.raises(ModelError, match="channels = 3 \\(from metadata_props\\) but the model's input has 1"):
        load_model(str(wrong), device="cpu")
    rgb_stats, _ = _export(tmp_path, 1, False, meta={"mean": [0.485, 0.456, 0.406]}, name="stats.onnx")
    with pytest.raises(ModelError, match="takes 1 \\(grayscale\\) channel but mean from metadata_props has 3"):
        load_model(str(rgb_stats), device="cpu")


def test_luma_matches_pillow_on_a_real_photograph():
    """The luma a grayscale model is fed equals Pillow's convert("L") on real pixels, to rounding."""
    import skimage.data
    import torch
    from PIL import Image

    from evalsuite.models.base import luma

    rgb = skimage.data.astronaut()  # 512 x 512 x 3 uint8
    pil = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float64)
    x = (rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    for y in (luma(x), luma(torch.from_numpy(x)).numpy()):
        assert y.shape == (1, 1, 512, 512) and y.dtype == np.float32
        ours = y[0, 0].astype(np.float64) * 255.0
        assert np.abs(ours - pil).max() <= 0.5 + 1e-3  # Pillow rounds the same weighted sum to 8 bits
        assert np.mean(np.round(ours) == pil) > 0.999


def test_gray_nhwc_adapter_feeds_pillow_luma(tmp_path):
    """What onnxruntime receives for a grayscale NHWC model: Pillow's L channel, normalised, channels last."""
    import skimage.data
    from PIL import Image

    path, _ = _export(tmp_path, 1, True, spatial=(64, 64))
    model = load_model(str(path), device="cpu")
    img = Image.fromarray(skimage.data.chelsea()).resize((64, 64), Image.BILINEAR)
    x = (np.asarray(img, dtype=np.float32) / 255.0).transpose(2, 0, 1)[None]
    fed = model.normalise(x)
    assert fed.shape == (1, 64, 64, 1) and fed.flags["C_CONTIGUOUS"]
    pil = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    assert np.abs(fed[0, :, :, 0] * STD + MEAN - pil).max() <= 0.5 / 255 + 1e-5


# ---------------------------------------------------------------------------------------------
# Output selection
# ---------------------------------------------------------------------------------------------

def test_output_selection_flag_metadata_and_errors(tmp_path, capsys):
    import torch

    from evalsuite.cli import main

    path, net = _export(tmp_path)
    x = np.random.default_rng(3).random((3, 3, 16, 16), dtype=np.float32)
    first = load_model(str(path), device="cpu")
    assert first.info.output_name == "logits" and first.info.extra["ignored_outputs"] == ["feat"]
    assert first.info.extra["metadata_fields"]["output"] == "default (first output)"
    feat = load_model(str(path), device="cpu", overrides={"output": "feat", "class_names": list("wxyz")})
    assert feat.info.output_name == "feat" and feat.info.extra["ignored_outputs"] == ["logits"]
    np.testing.assert_allclose(feat.predict(x), _reference(net, x, 3, False, output=1), atol=1e-6)
    _, check = feat.checked_torch_module(torch.from_numpy(x), tolerance=1e-4, device="cpu")
    assert check["max_abs_diff"] < 1e-5 and any("'feat' kept" in n for n in check["notes"])
    _, check = first.checked_torch_module(torch.from_numpy(x), tolerance=1e-4, device="cpu")  # not feat's cached bridge
    assert check["max_abs_diff"] < 1e-5
    with pytest.raises(UsageError, match="--output 'logit' is not an output of the model \\(did you mean 'logits'\\?\\); "
                                         "outputs: logits, feat"):
        load_model(str(path), device="cpu", overrides={"output": "logit"})
    meta, _ = _export(tmp_path, meta={"output": "probs"}, name="meta.onnx")
    with pytest.raises(ModelError, match="output \\(from metadata_props\\) 'probs' is not an output"):
        load_model(str(meta), device="cpu")
    assert main(["inspect", str(path), "--output", "logit", "--device", "cpu"]) == 2
    assert "did you mean 'logits'" in capsys.readouterr().err
    assert main(["inspect", str(path), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "Output used           logits (not read: feat)" in text
    assert "Output                feat: n x 4 tensor(float)" in text  # every output is still listed


def test_torchscript_layout_and_channels_from_metadata(tmp_path):
    """TorchScript has no input shape to read: metadata says NHWC / one channel; --output is ONNX's."""
    import torch

    from evalsuite.models.export import preprocessing_dict

    net = _net(1, True)
    scripted = torch.jit.trace(net, torch.rand(1, 16, 16, 1), strict=False)
    meta = {**preprocessing_dict(input_size=(16, 16), mean=[MEAN], std=[STD], class_names=list("abcde"),
                                 layout="NHWC", channels=1)}
    path = tmp_path / "m.pt"
    torch.jit.save(scripted, str(path), _extra_files={"evalsuite.preprocessing": json.dumps(meta)})
    model = load_model(str(path), device="cpu")
    assert (model.info.layout, model.info.channels) == ("NHWC", 1)
    x = np.random.default_rng(4).random((3, 3, 16, 16), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x), _reference(net, x, 1, True), atol=1e-5)
    _, check = model.checked_torch_module(torch.from_numpy(x), tolerance=1e-5)
    assert check["max_abs_diff"] < 1e-5
    with pytest.raises(UsageError, match="names an ONNX output"):
        load_model(str(path), device="cpu", overrides={"output": "logits"})


# ---------------------------------------------------------------------------------------------
# What the data loader does with the photos such models see; older results still render
# ---------------------------------------------------------------------------------------------

def test_loader_rgb_from_exif_rotated_rgba_and_gray_photos(tmp_path):
    """Readers hand every model RGB: EXIF orientation applied, alpha dropped, grey repeated."""
    import skimage.data
    from PIL import Image, ImageOps

    from evalsuite.data import open_dataset
    from evalsuite.data.loader import load_images

    photo = Image.fromarray(skimage.data.chelsea()).resize((60, 40))  # W 60 x H 40
    (tmp_path / "d" / "a").mkdir(parents=True)
    exif = photo.getexif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90 degrees clockwise
    photo.save(tmp_path / "d" / "a" / "exif.jpg", exif=exif, quality=95)
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.new("L", photo.size, 7))
    rgba.save(tmp_path / "d" / "a" / "rgba.png")
    photo.convert("L").save(tmp_path / "d" / "a" / "gray.png")
    ds = open_dataset(str(tmp_path / "d"))
    got = {p.rsplit("/", 1)[-1]: ds.loader(i) for i, p in enumerate(ds.ids)}
    want = ImageOps.exif_transpose(Image.open(tmp_path / "d" / "a" / "exif.jpg")).convert("RGB")
    assert got["exif.jpg"].shape == (60, 40, 3)  # upright: portrait
    np.testing.assert_array_equal(got["exif.jpg"], np.asarray(want))
    np.testing.assert_array_equal(got["rgba.png"], np.asarray(photo))  # stored colour kept, alpha dropped
    gray = np.asarray(photo.convert("L"))
    np.testing.assert_array_equal(got["gray.png"], np.repeat(gray[..., None], 3, axis=2))
    batch = load_images(ds, np.arange(3), input_size=(16, 16), workers=1)
    assert batch.shape == (3, 16, 16, 3) and batch.dtype == np.uint8


def test_older_results_without_layout_fields_still_render(quick_run, tmp_path):
    from evalsuite.cli import main

    results = json.loads((quick_run / "results.json").read_text())
    assert results["model"]["layout"] == "NCHW" and results["model"]["channels"] == 3
    assert results["model"]["output_name"] == "logits"
    for key in ("layout", "channels", "output_name"):
        del results["model"][key]  # what results.json of earlier versions holds
    old = tmp_path / "results.json"
    old.write_text(json.dumps(results))
    assert main(["report", str(old), "--out", str(tmp_path / "s.html")]) == 0
    html = (tmp_path / "s.html").read_text(encoding="utf-8")
    assert "NCHW input" in html and "output <code>" not in html


def test_opset18_split_lowered_as_slices_for_the_bridge():
    """The dynamo exporter's opset-18 ``Split`` (``num_outputs``, uneven; or a ``split`` input) has
    no version-converter adapter to opset 17: the bridge rewrites it as ``Slice`` nodes, and the
    lowered graph computes what onnxruntime computes on the original."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from evalsuite.models.onnx_bridge import prepare_graph

    nodes = [helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3),  # 7 -> 3, 3, 1
             helper.make_node("Split", ["x"], ["d", "e"], axis=-1, name="s2"),  # by the split input below
             helper.make_node("Mul", ["a", "b"], ["ab"]),
             helper.make_node("ReduceSum", ["ab", "ax"], ["y1"], keepdims=0),
             helper.make_node("ReduceSum", ["c", "ax"], ["y2"], keepdims=0),
             helper.make_node("ReduceSum", ["d", "ax2"], ["y3"], keepdims=0),
             helper.make_node("Concat", ["y1", "y2", "y3"], ["y"], axis=1)]
    nodes[1].input.append("sizes")
    inits = [numpy_helper.from_array(np.array([2, 3], np.int64), "ax"),
             numpy_helper.from_array(np.array([1, 2], np.int64), "ax2"),
             numpy_helper.from_array(np.array([1, 4], np.int64), "sizes")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 7, 4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    x = np.random.default_rng(5).standard_normal((2, 7, 4, 5)).astype(np.float32)
    want = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    lowered, notes = prepare_graph(proto)
    assert "2 opset-18 Split node(s) rewritten as Slice" in notes and "opset 18 -> 17" in notes
    assert not [n for n in lowered.graph.node if n.op_type == "Split"]
    got = ort.InferenceSession(lowered.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert want.shape == (2, 5) and np.array_equal(got, want)


@pytest.mark.gpu
def test_accelerator_tensors_get_the_same_luma_and_permute(tmp_path):
    """A CUDA batch is normalised where it lives (torch path): same array onnxruntime gets from NumPy."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    path, net = _export(tmp_path, 1, True)
    model = load_model(str(path), device="cpu")
    x = np.random.default_rng(6).random((3, 3, 16, 16), dtype=np.float32)
    np.testing.assert_allclose(model.normalise(torch.from_numpy(x).cuda()), model.normalise(x), rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.predict(torch.from_numpy(x).cuda()), _reference(net, x, 1, True), atol=1e-5)
