"""The model matrix: every model format, and the issue's architectures, through ``evalsuite inspect``
and the ``standard`` suite on a 16-image folder of real photographs (slow).

Every network is a timm architecture with random weights (``pretrained=False``: nothing is
downloaded), so accuracy means nothing and the run may exit 1 on the default policy's gates; what
is tested is that each format loads, inspects (exit 0), runs every suite of the ``standard`` preset
(exit 0 or 1, never 2 or 3) and writes a scorecard, that its logits match the torch network's on
the photographs, and that the adversarial suite attacks it in the mode ``docs/models.md`` states
(white-box through the ONNX gradient bridge, white-box through the model's own torch module, or
the black-box fallback), as recorded in ``results.json`` and stated in the scorecard. For every
ONNX file the run builds a bridge for, the bridge's agreement with onnxruntime on the run's own
images is checked (``report.adversarial.bridge``).

Cost on 2 CPU cores: the architectures run at 64 px (not 224) and the standard preset with small
options (``SMALL_OPTIONS``: one L-inf epsilon on 8 attacked samples, 100 bootstrap replicates
instead of 1000 in calibration and slices, ``--perturbation-samples 16``); the suite list, the
corruption and device conditions and the analysis of every condition are the preset's.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_real_architecture import CLASSES, MEAN, SIZE, STD, _real_batch, _torch_reference, export_timm

pytestmark = pytest.mark.slow

RESIZE = 72  # as export_timm records: resize the short side to 72, centre-crop 64

#: ``suite_overrides`` of a run config used with ``--suite standard`` (the preset's suites, small settings).
SMALL_OPTIONS = {
    "adversarial": {"n": 8, "norms": ["linf"], "linf_eps": ["8/255"], "sanity": False, "examples": 0,
                    "blackbox_n": 0, "square_queries": 5, "attack_batch_size": 8},
    "calibration": {"n_boot": 100},
    "slices": {"n_boot": 100},
}
STANDARD_SUITES = {"clean", "corruption", "device", "calibration", "slices", "adversarial", "preprocessing"}

#: What docs/models.md states for each format: (results.json ``metrics.adversarial.white_box.attack_mode``,
#: where white-box gradients come from -- the ONNX bridge or the model's own torch module -- or, for
#: the black-box fallback, a phrase of its reason). Measured by test_format_matrix.
FORMAT_MODES = {
    "onnx-legacy": ("white-box", "bridge"),
    "onnx-dynamo": ("white-box", "bridge"),
    "onnx-int8": ("black-box", "DequantizeLinear"),
    "torchscript-trace": ("white-box", "torch module"),
    "torchscript-script": ("white-box", "torch module"),
    "pt2": ("white-box", "torch module"),
    "timm-safetensors": ("white-box", "torch module"),
}

#: The issue's architecture list (timm names): white-box through the bridge with either exporter.
ARCH_MATRIX = ["resnet18", "resnet50", "mobilenetv3_small_100", "efficientnet_b0", "convnext_atto",
               "vit_tiny_patch16_224", "deit_tiny_patch16_224", "regnetx_002"]
ARCH_KWARGS = {"vit_tiny_patch16_224": {"img_size": SIZE}, "deit_tiny_patch16_224": {"img_size": SIZE}}

#: Real photographs (scikit-image, scikit-learn) and the class each is filed under.
PHOTO_CLASSES = {"astronaut": "animal", "chelsea": "animal", "flower": "animal", "hubble": "animal",
                 "coffee": "thing", "rocket": "thing", "china": "thing", "ihc": "thing"}


def _photographs() -> dict[str, np.ndarray]:
    import skimage.data
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    return {"astronaut": skimage.data.astronaut(), "chelsea": skimage.data.chelsea(), "flower": flower,
            "hubble": skimage.data.hubble_deep_field(), "coffee": skimage.data.coffee(),
            "rocket": skimage.data.rocket(), "china": china, "ihc": skimage.data.immunohistochemistry()}


def _evaluation_crops(img: np.ndarray) -> list[np.ndarray]:
    """Two square crops of 3/4 of the short side: top-left and top-right."""
    h, w = img.shape[:2]
    s = min(h, w) * 3 // 4
    return [img[:s, :s], img[:s, w - s :]]


def _calibration_crops(img: np.ndarray) -> list[np.ndarray]:
    """Two other crops: the centre half and the bottom-centre 2/3 (never an evaluation crop's pixels)."""
    h, w = img.shape[:2]
    a, b = min(h, w) // 2, min(h, w) * 2 // 3
    return [img[(h - a) // 2 : (h - a) // 2 + a, (w - a) // 2 : (w - a) // 2 + a],
            img[h - b :, (w - b) // 2 : (w - b) // 2 + b]]


def _write_folder(root: Path, crops, jpeg_every: int) -> Path:
    from PIL import Image

    for name, img in sorted(_photographs().items()):
        cls = PHOTO_CLASSES[name]
        (root / cls).mkdir(parents=True, exist_ok=True)
        for k, crop in enumerate(crops(img)):
            ext = ".jpg" if jpeg_every and k % jpeg_every == 0 else ".png"
            Image.fromarray(np.ascontiguousarray(crop)).save(root / cls / f"{name}-{k}{ext}",
                                                             **({"quality": 90} if ext == ".jpg" else {}))
    return root


@pytest.fixture(scope="module")
def photos16(tmp_path_factory) -> Path:
    """16 images (8 photographs x 2 crops, half JPEG, half PNG), 8 per class."""
    root = _write_folder(tmp_path_factory.mktemp("photos16") / "data", _evaluation_crops, jpeg_every=2)
    assert len(list(root.rglob("*.*"))) == 16
    return root


@pytest.fixture(scope="module")
def calibration16(tmp_path_factory) -> Path:
    """16 other crops of the same photographs (PNG): calibration data disjoint from ``photos16``."""
    return _write_folder(tmp_path_factory.mktemp("calib16") / "data", _calibration_crops, jpeg_every=0)


@pytest.fixture(scope="module")
def run_config(tmp_path_factory) -> Path:
    import yaml

    path = tmp_path_factory.mktemp("cfg") / "run.yaml"
    path.write_text(yaml.safe_dump({"suite": "standard", "suite_overrides": SMALL_OPTIONS}))
    return path


def _timm_net(name: str, **kwargs):
    import timm
    import torch

    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=len(CLASSES), **kwargs).eval()


def _metadata() -> dict:
    from evalsuite.models.export import preprocessing_dict

    return preprocessing_dict(input_size=(SIZE, SIZE), resize=RESIZE, mean=MEAN, std=STD, class_names=CLASSES)


def _build(fmt: str, tmp_path: Path, calibration: Path) -> tuple[str, list[str], object]:
    """(model spec, extra CLI args, torch network on normalised NCHW input) of resnet18 in ``fmt``."""
    import torch

    from evalsuite.models.metadata import METADATA_KEY

    example = torch.rand(2, 3, SIZE, SIZE)
    if fmt in ("onnx-legacy", "onnx-dynamo", "onnx-int8"):
        dynamo = fmt == "onnx-dynamo"
        path, net = export_timm(tmp_path / "resnet18.onnx", "resnet18", dynamo=dynamo, opset=18 if dynamo else 17)
        if fmt == "onnx-int8":
            from evalsuite.cli import main

            int8 = tmp_path / "resnet18.int8.onnx"
            assert main(["quantize", str(path), "--calibration-data", str(calibration), "-o", str(int8)]) == 0
            return str(int8), [], None  # INT8 logits are compared with FP32's in the test
        return str(path), [], net
    net = _timm_net("resnet18")
    meta = json.dumps(_metadata())
    if fmt.startswith("torchscript"):
        path = tmp_path / "resnet18.pt"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            module = torch.jit.trace(net, example) if fmt == "torchscript-trace" else torch.jit.script(net)
            torch.jit.save(module, str(path), _extra_files={METADATA_KEY: meta})
        return str(path), [], net
    if fmt == "pt2":
        path = tmp_path / "resnet18.pt2"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(net, (example,),
                                          dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
            torch.export.save(program, str(path), extra_files={METADATA_KEY: meta})
        return str(path), [], net
    if fmt == "timm-safetensors":
        from safetensors.torch import save_file

        ckpt = tmp_path / "resnet18.safetensors"
        save_file(net.state_dict(), str(ckpt))
        (tmp_path / "resnet18.json").write_text(meta)  # the checkpoint's sidecar: 64 px, not timm's 224
        return "timm:resnet18", ["--checkpoint", str(ckpt)], net
    raise AssertionError(fmt)


def _inspect(spec: str, extra: list[str], capsys) -> str:
    from evalsuite.cli import main

    capsys.readouterr()
    assert main(["inspect", spec, *extra, "--device", "cpu"]) == 0
    return capsys.readouterr().out


def _standard_run(spec: str, extra: list[str], data: Path, config: Path, out: Path) -> tuple[int, dict, str]:
    """``evalsuite run SPEC --suite standard`` with the small options; (exit code, results, scorecard)."""
    from evalsuite.cli import main

    code = main(["run", spec, *extra, "--data", str(data), "--suite", "standard", "--config", str(config),
                 "--perturbation-samples", "16", "--device", "cpu", "--out", str(out)])
    assert code in (0, 1), code  # a random network may fail the default policy's gates; never exit 2/3
    results = json.loads((out / "results.json").read_text())
    html = (out / "scorecard.html").read_text(encoding="utf-8")
    assert set(results["metrics"]) >= STANDARD_SUITES, sorted(results["metrics"])
    assert results["metrics"]["clean"]["accuracy"]["n"] == 16
    assert results["metrics"]["adversarial"]["linf"]["8_255"]["robust_accuracy"]["n"] == 8
    return code, results, html


def _check_mode(results: dict, html: str, mode: str, source: str | None, logits: np.ndarray) -> dict:
    """The adversarial mode in results.json and the scorecard is ``mode``; white-box gradients come
    from ``source`` (the ONNX bridge, or the model's own module), and that module's logits agreed
    with ``predict`` on the run's images within the tolerance x max(1, max |logit|) (``logits``:
    ``predict`` on the same photographs)."""
    adv = results["metrics"]["adversarial"]
    report = results["report"]["adversarial"]
    assert adv["white_box"]["attack_mode"] == mode, report.get("reason")
    params = results["conditions"]["attack/linf/8_255"]["params"]
    if mode == "black-box":
        assert report["mode"] == params["mode"] == "black-box only"
        assert adv["white_box"]["value"] == 0.0 and params["attacks"] == ["square"]
        assert "\n" not in report["reason"] and source in report["reason"]  # source: the reason's gist
        assert report["reason"].split(" (")[0] in html
        assert "Black-box only." in html and "White-box gradients come from" not in html
        return report
    assert report["mode"] == params["mode"] == "white-box"
    assert adv["white_box"]["value"] == 1.0 and "square" not in params["attacks"]
    assert "Black-box only." not in html
    bridge = report["bridge"]
    assert bridge["n_checked"] == 8 and bridge["tolerance"] == 1e-3
    assert bridge["max_abs_diff"] <= bridge["tolerance"] * max(1.0, float(np.abs(logits).max()))
    if source == "bridge":
        assert bridge["used"] is True
        assert "White-box gradients come from the ONNX file converted to torch (the gradient bridge)" in html
    else:
        assert bridge["used"] is False
        assert "White-box gradients come from the model" in html and "own torch module" in html
        assert bridge["max_abs_diff"] <= 1e-5  # the very module predict() runs
    return report


FORMATS = list(FORMAT_MODES)


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_matrix(tmp_path, photos16, calibration16, run_config, capsys, fmt):
    """resnet18 at 64 px in each format: inspect, logits against torch, the standard suite, the mode."""
    from evalsuite.models import load_model

    spec, extra, net = _build(fmt, tmp_path, calibration16)
    text = _inspect(spec, extra, capsys)
    assert "animal" in text and "thing" in text  # the class names were found
    ckpt = extra[1] if extra else None
    model = load_model(spec, device="cpu", checkpoint=ckpt)
    assert model.info.input_size == (SIZE, SIZE) and model.info.class_names == tuple(CLASSES)
    x = _real_batch(model, photos16)
    ours = model.predict(x)
    if net is not None:
        np.testing.assert_allclose(ours, _torch_reference(net, x, "NCHW", 3), rtol=0, atol=1e-3)
    else:  # INT8: quantized logits track the FP32 network's (random weights: loosely)
        fp32 = load_model(str(Path(spec).with_name("resnet18.onnx")), device="cpu").predict(x)
        assert np.all(np.isfinite(ours)) and np.corrcoef(ours.ravel(), fp32.ravel())[0, 1] > 0.9
        assert "INT8 QDQ" in text
    code, results, html = _standard_run(spec, extra, photos16, run_config, tmp_path / "run")
    mode, source = FORMAT_MODES[fmt]
    report = _check_mode(results, html, mode, source, ours)
    expected_format = {"onnx": "onnx", "torchscript": "torchscript", "pt2": "torch.export", "timm": "timm"}
    assert results["model"]["format"] == expected_format[fmt.split("-")[0]]
    if fmt == "onnx-int8":
        overlap = results["model"]["extra"]["calibration_overlap"]
        assert overlap["overlapping"] == 0 and overlap["evaluated"] == 16 and overlap["calibration_n"] == 16
    print(f"{fmt}: exit {code}, {mode}" + (f" ({report['reason']})" if mode == "black-box" else
                                           f", max |diff| {report['bridge']['max_abs_diff']:.2g}"))


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
@pytest.mark.parametrize("name", [n for n in ARCH_MATRIX if n != "resnet18"])  # resnet18: test_format_matrix
def test_architecture_matrix(tmp_path, photos16, run_config, capsys, name, dynamo):
    """Each architecture exported by ``torch.onnx.export`` (legacy at opset 17, dynamo at opset 18):
    inspect, onnxruntime against torch, the standard suite, white-box through the bridge (its
    agreement with onnxruntime checked on the run's own images)."""
    from evalsuite.models import load_model

    path, net = export_timm(tmp_path / f"{name}.onnx", name, dynamo=dynamo, opset=18 if dynamo else 17,
                            **ARCH_KWARGS.get(name, {}))
    text = _inspect(str(path), [], capsys)
    assert "Input layout          NCHW" in text and "Output used           logits" in text
    model = load_model(str(path), device="cpu")
    x = _real_batch(model, photos16)
    ours = model.predict(x)
    np.testing.assert_allclose(ours, _torch_reference(net, x, "NCHW", 3), rtol=0, atol=1e-3)
    code, results, html = _standard_run(str(path), [], photos16, run_config, tmp_path / "run")
    report = _check_mode(results, html, "white-box", "bridge", ours)
    print(f"{name} dynamo={dynamo}: exit {code}, white-box, bridge max |diff| {report['bridge']['max_abs_diff']:.2g}, "
          f"{results['provenance']['seconds']:.0f} s")
