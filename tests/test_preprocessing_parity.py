"""The preprocessing suite: declared preprocessing against plausible mistakes, and the training record.

End to end through ``evalsuite run --suite preprocessing``: a network trained on BGR input but
declared RGB is flagged and the check names ``bgr``; the same network declared BGR is not. A
network that expects 0-255 input with a Caffe-style mean (declared in 255 units) is flagged as
``scale_255``; declared correctly it is not. The demo network exported by ``evalsuite train``'s
exporter carries its training record: with its own metadata nothing is flagged and the record
matches; with ImageNet mean/std forced by flags the suite names ``norm_half`` and the record
comparison names ``mean`` and ``std``. Re-gating the stored results gives the same verdict.
The value transforms are checked against the normalisation written out by hand, the paired
interval against scipy's paired bootstrap.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evalsuite.cli import main
from evalsuite.errors import UsageError
from evalsuite.models.base import ModelInfo
from evalsuite.models.preprocess_variants import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Pipeline,
    compare_record,
    training_record,
    value_transform,
    variants_for,
)

COLOURS = {"red": (0.8, 0.15, 0.15), "blue": (0.15, 0.15, 0.8), "yellow": (0.8, 0.8, 0.15), "cyan": (0.15, 0.8, 0.8)}
CAFFE_MEAN = (123.675, 116.28, 103.53)


def _info(**kw) -> ModelInfo:
    base = {"input_size": (8, 8), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "class_names": ("a", "b"),
            "format": "onnx", "source": "m.onnx", "sha256": "0"}
    return ModelInfo(**{**base, **kw})


def _run(model: Path, data: str, out: Path, *flags: str) -> tuple[int, dict]:
    code = main(["run", str(model), "--data", data, "--suite", "preprocessing", "--out", str(out), *flags])
    return code, json.loads((out / "results.json").read_text())


def _parity_checks(results: dict) -> list[dict]:
    return [c for c in results["checks"] if c["metric"].startswith("preprocessing.")
            and not c["metric"].startswith("preprocessing.training_record")]


def _flagged(results: dict) -> list[str]:
    return [c["metric"].split(".")[1] for c in _parity_checks(results) if c["name"].startswith("preprocessing mismatch")]


# ------------------------------------------------------------------------------ unit level
@pytest.mark.parametrize("order", ["RGB", "BGR"])
@pytest.mark.parametrize("mean,std", [((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), (IMAGENET_MEAN, IMAGENET_STD),
                                      ((0.2, 0.4, 0.6), (0.3, 0.2, 0.1))])
def test_value_transform_feeds_the_network_what_the_variant_would(order, mean, std):
    """PixelSpaceModel(identity) shows what the network receives: it must be the variant's
    normalisation of x, written out by hand for each family."""
    import torch
    from torch import nn

    from evalsuite.models.pixel import PixelSpaceModel

    x = torch.rand(4, 3, 5, 6, generator=torch.Generator().manual_seed(0))
    info = _info(mean=mean, std=std, channel_order=order)
    seen = PixelSpaceModel(nn.Identity(), mean, std, order)
    declared = Pipeline.of(info)

    def reorder(t, o):
        return t.flip(1) if o == "BGR" else t

    def col(v):
        return torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1)

    variants = {v.name: v for v in variants_for(info) if not v.changes_geometry}
    other = "rgb" if order == "BGR" else "bgr"
    expected = {
        other: (reorder(x, "BGR" if order == "RGB" else "RGB") - col(mean)) / col(std),
        "scale_255": (reorder(x, order) * 255 - col(mean)) / col(std),
    }
    in_order = (lambda v: v[::-1]) if order == "BGR" else (lambda v: v)
    norms = {"norm_imagenet": (IMAGENET_MEAN, IMAGENET_STD), "norm_half": ((0.5,) * 3, (0.5,) * 3),
             "norm_none": ((0.0,) * 3, (1.0,) * 3)}
    for name, (m, s) in norms.items():
        expected[name] = (reorder(x, order) - col(in_order(m))) / col(in_order(s))
    # the declared normalisation itself is no alternative (ImageNet's, in the network's channel order)
    assert set(expected) - set(variants) == ({"norm_half"} if mean == (0.5, 0.5, 0.5) else
                                             {"norm_imagenet"} if mean == in_order(IMAGENET_MEAN) else set())
    for name, v in variants.items():
        got = seen(value_transform(x, declared, v.pipeline))
        torch.testing.assert_close(got, expected[name], rtol=1e-5, atol=1e-4, msg=name)


def test_only_alternatives_that_differ_from_the_declared_pipeline():
    names = [v.name for v in variants_for(_info())]
    assert names == ["bgr", "scale_255", "norm_imagenet", "norm_none", "resize_crop", "bicubic"]
    other = [v.name for v in variants_for(_info(channel_order="BGR", mean=IMAGENET_MEAN[::-1], std=IMAGENET_STD[::-1],
                                                 resize=256, input_size=(224, 224), interpolation="bicubic"))]
    assert other == ["rgb", "scale_255", "norm_half", "norm_none", "plain_resize", "bilinear"]
    assert [v.name for v in variants_for(_info(interpolation="lanczos")) if v.family == "interpolation"] == \
        ["bilinear", "bicubic"]
    crop = next(v for v in variants_for(_info(input_size=(224, 224))) if v.name == "resize_crop")
    assert crop.pipeline.resize == 256 and crop.pipeline.input_size == (224, 224)  # timm's floor(224 / 0.875)
    assert "bgr" not in [v.name for v in variants_for(_info(channels=1))]  # a grey network never sees the order
    assert [v.family for v in variants_for(_info(), ["scale", "resize"])] == ["scale", "resize"]


def test_options_are_checked():
    from evalsuite.suites.preprocessing import PreprocessingSuite

    with pytest.raises(UsageError, match="did you mean 'channel_order'"):
        PreprocessingSuite({"variants": ["chanel_order"]})
    with pytest.raises(UsageError, match="margin"):
        PreprocessingSuite({"margin": 1.5})
    with pytest.raises(UsageError, match="sample"):
        PreprocessingSuite({"sample": 0})
    assert PreprocessingSuite({}).opts.sample == 256 and PreprocessingSuite({}).opts.margin == 0.02


def test_paired_gain_interval_matches_scipy_paired_bootstrap():
    """The gain leaf is mean_metric of the per-sample difference: a paired percentile bootstrap."""
    from scipy import stats

    from evalsuite.stats import mean_metric

    rng = np.random.default_rng(3)
    declared = (rng.random(300) < 0.7).astype(float)
    alt = np.where(rng.random(300) < 0.85, declared, 1 - declared)  # correlated with declared: pairing matters
    leaf = mean_metric(alt - declared, direction="lower", seed=0)
    ref = stats.bootstrap((alt, declared), lambda a, b: np.mean(a - b), paired=True, vectorized=False,
                          n_resamples=2000, method="percentile", random_state=1).confidence_interval
    assert leaf["value"] == pytest.approx(alt.mean() - declared.mean())
    assert leaf["ci"][0] == pytest.approx(ref.low, abs=0.012) and leaf["ci"][1] == pytest.approx(ref.high, abs=0.012)
    unpaired = stats.bootstrap((alt,), np.mean, n_resamples=500, random_state=1).confidence_interval
    assert leaf["ci"][1] - leaf["ci"][0] < (unpaired.high - unpaired.low)  # narrower than one mean's alone


def test_training_record_comparison_field_by_field():
    record = {"input_size": [8, 8], "resize": None, "interpolation": "bilinear", "mean": [0.5, 0.5, 0.5],
              "std": [0.25, 0.25, 0.25], "channel_order": "RGB"}
    info = _info(extra={"metadata_extra": {"training_preprocessing": record}})
    got, _ = training_record(info)
    rows = {r["field"]: r["match"] for r in compare_record(info, got)}
    assert rows == {"input_size": True, "resize": True, "interpolation": True, "mean": True, "std": False,
                    "channel_order": True}
    assert training_record(_info())[0] is None
    bad = _info(extra={"metadata_extra": {"training_preprocessing": {"mean": "/etc/passwd"}}})
    assert training_record(bad)[0] is None and "malformed" in training_record(bad)[1]


# ------------------------------------------------------------------------------ end to end
def _colour_images(n: int, seed: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Colour-coded classes (red/blue and yellow/cyan swap under a channel flip), noisy textures."""
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    labels = np.arange(n) % len(names)
    base = np.array([COLOURS[names[k]] for k in labels])[:, None, None, :]
    shade = rng.uniform(0.7, 1.1, (n, 1, 1, 1))
    img = base * shade + rng.normal(0, 0.08, (n, size, size, 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), np.array(names)[labels]


@pytest.fixture(scope="module")
def bgr_case(tmp_path_factory):
    """(ONNX of a network trained on BGR input, metadata saying RGB; an .npz of colour test data)."""
    import torch
    from torch import nn

    from evalsuite.models.export import export_onnx
    from evalsuite.models.pixel import PixelSpaceModel

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    model = PixelSpaceModel(net, (0.5,) * 3, (0.5,) * 3, "BGR")  # trained seeing BGR
    images, names = _colour_images(200, seed=0)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(np.array([list(COLOURS).index(s) for s in names]))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest (and immune to a busy machine)
    try:
        for _ in range(40):  # ~0.2 s
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    root = tmp_path_factory.mktemp("bgr")
    path = export_onnx(net, root / "bgr.onnx", input_size=(16, 16), mean=(0.5,) * 3, std=(0.5,) * 3,
                       class_names=list(COLOURS))  # metadata: channel_order RGB (the mistake)
    test_images, test_names = _colour_images(160, seed=1)
    np.savez(root / "colours.npz", images=test_images, labels=test_names)
    return path, root / "colours.npz"


def test_bgr_network_declared_rgb_is_flagged_and_named(bgr_case, tmp_path):
    model, data = bgr_case
    code, res = _run(model, str(data), tmp_path / "wrong")
    m = res["metrics"]["preprocessing"]
    assert code == 1
    assert _flagged(res) == ["bgr"]
    check = _parity_checks(res)[0]
    assert check["name"].startswith("preprocessing mismatch suspected: bgr scores ")
    assert check["bound"] == "ci_lower" and check["max"] == 0.0 and check["severity"] == "fail"
    assert m["bgr"]["accuracy"]["value"] > 0.95 and m["declared"]["accuracy"]["value"] < 0.2
    assert m["bgr"]["accuracy_gain"]["n"] == m["declared"]["accuracy"]["n"] == 160
    # the gain is the paired difference of the two accuracies on the same samples
    assert m["bgr"]["accuracy_gain"]["value"] == pytest.approx(m["bgr"]["accuracy"]["value"] - m["declared"]["accuracy"]["value"])
    assert m["declared"]["accuracy"]["value"] == pytest.approx(res["metrics"]["clean"]["accuracy"]["value"])
    assert main(["gate", str(tmp_path / "wrong")]) == 1  # the stored results give the same verdict
    assert "mismatch suspected" in (tmp_path / "wrong" / "scorecard.html").read_text()


def test_bgr_network_declared_bgr_is_not_flagged(bgr_case, tmp_path):
    model, data = bgr_case
    code, res = _run(model, str(data), tmp_path / "right", "--channel-order", "BGR")
    assert code == 0 and _flagged(res) == []
    m = res["metrics"]["preprocessing"]
    assert "rgb" in m and "bgr" not in m and m["rgb"]["accuracy_gain"]["value"] < -0.5
    assert [c["name"] for c in _parity_checks(res)] == ["preprocessing parity: no alternative scores more than 2 points higher"]


@pytest.fixture(scope="module")
def caffe_models(digits_model, tmp_path_factory):
    """The digits network behind a layer that makes it expect Caffe-style input ``255 x - mean``:
    exported once declaring that mean in 255 units (wrong: evalsuite feeds [0, 1]) and once in
    [0, 1] units (right: mean / 255, std 1 / 255)."""
    import torch
    from torch import nn

    from evalsuite.models.export import export_onnx

    class FromCaffe(nn.Module):  # (255 x - m) -> 2 x - 1, what the digits network expects
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("b", torch.tensor([2 * m / 255 - 1 for m in CAFFE_MEAN]).view(1, 3, 1, 1))

        def forward(self, z):
            return z * (2 / 255) + self.b

    net = nn.Sequential(FromCaffe(), digits_model.network).eval()
    root = tmp_path_factory.mktemp("caffe")
    names = [str(i) for i in range(10)]
    wrong = export_onnx(net, root / "wrong.onnx", input_size=(32, 32), mean=CAFFE_MEAN, std=(1.0,) * 3, class_names=names)
    right = export_onnx(net, root / "right.onnx", input_size=(32, 32), mean=[m / 255 for m in CAFFE_MEAN],
                        std=(1 / 255,) * 3, class_names=names)
    return wrong, right


def test_wrong_input_scale_is_flagged_and_named(caffe_models, tmp_path):
    wrong, right = caffe_models
    code, res = _run(wrong, "builtin:digits", tmp_path / "wrong", "--limit", "120")
    assert code == 1 and _flagged(res) == ["scale_255"]
    m = res["metrics"]["preprocessing"]
    assert m["scale_255"]["accuracy"]["value"] > 0.9 and m["declared"]["accuracy"]["value"] < 0.3
    code, res = _run(right, "builtin:digits", tmp_path / "right", "--limit", "120")
    assert code == 0 and _flagged(res) == []
    assert res["metrics"]["preprocessing"]["declared"]["accuracy"]["value"] > 0.9


@pytest.fixture(scope="module")
def trained_export(digits_model, tmp_path_factory):
    """The demo network written by ``evalsuite train``'s exporter (ONNX with the training record)."""
    from evalsuite.demo_model import DIGITS_MEAN, DIGITS_STD
    from training.export import export_model

    out = tmp_path_factory.mktemp("trained")
    meta = {"class_names": [str(i) for i in range(10)], "mean": list(DIGITS_MEAN), "std": list(DIGITS_STD),
            "input_size": [32, 32], "resize": None, "interpolation": "bilinear", "model": {"name": "digits_cnn"},
            "recipe": "test", "recipe_hash": "0"}
    return export_model(digits_model.network, out, metadata=meta)["onnx"]


def test_trained_model_matches_its_record_and_is_not_flagged(trained_export, tmp_path):
    code, res = _run(trained_export, "builtin:digits", tmp_path / "run", "--limit", "120")
    assert code == 0 and _flagged(res) == []
    assert res["metrics"]["preprocessing"]["training_record"]["mismatches"]["value"] == 0
    rec = res["report"]["preprocessing"]["training_record"]
    assert rec["present"] and [r["field"] for r in rec["fields"]] == [
        "input_size", "resize", "interpolation", "mean", "std", "channel_order"]
    names = [c["name"] for c in res["checks"]]
    assert "preprocessing matches the training record" in names
    # the declared gate paths are exactly the written ones (both directions, as test_metric_specs)
    from evalsuite.api import plan_run
    from evalsuite.config import RunConfig
    from evalsuite.results import iter_metric_paths

    specs = [s for s in plan_run(RunConfig(model=str(trained_export), data="builtin:digits", out_dir=str(tmp_path / "plan"),
                                           suite="preprocessing", limit=120)).specs if s.pattern.startswith("preprocessing.")]
    written = dict(iter_metric_paths({"preprocessing": res["metrics"]["preprocessing"]}))
    assert sorted(s.pattern for s in specs) == sorted(written)
    assert all(s.ci == (written[s.pattern]["ci"] is not None) for s in specs)


def test_overridden_normalisation_is_flagged_against_alternatives_and_record(trained_export, tmp_path):
    code, res = _run(trained_export, "builtin:digits", tmp_path / "run", "--limit", "120",
                     "--mean", ",".join(map(str, IMAGENET_MEAN)), "--std", ",".join(map(str, IMAGENET_STD)))
    assert code == 1
    assert _flagged(res) == ["norm_half"]
    leaf = res["metrics"]["preprocessing"]["training_record"]["mismatches"]
    assert leaf["value"] == 2 and leaf["fields"] == ["mean", "std"] and leaf["n"] == 6
    assert "preprocessing differs from the training record: mean, std" in [c["name"] for c in res["checks"]]


def test_no_training_record_means_no_record_check(digits_onnx, tmp_path):
    code, res = _run(digits_onnx, "builtin:digits", tmp_path / "run", "--limit", "120")
    assert code == 0 and _flagged(res) == []
    assert "training_record" not in res["metrics"]["preprocessing"]
    rec = res["report"]["preprocessing"]["training_record"]
    assert rec["present"] is False and "no training record" in rec["note"]
    assert not [c for c in res["checks"] if "training record" in c["name"]]


@pytest.mark.gpu
def test_cuda_run_matches_the_cpu_run(bgr_case, tmp_path):
    """The same suite with conditions and transforms on the GPU gives the CPU's numbers."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    model, data = bgr_case
    _, cpu = _run(model, str(data), tmp_path / "cpu", "--device", "cpu")
    _, gpu = _run(model, str(data), tmp_path / "gpu", "--device", "cuda")
    for name, leaves in cpu["metrics"]["preprocessing"].items():
        for leaf, m in leaves.items():
            assert gpu["metrics"]["preprocessing"][name][leaf]["value"] == pytest.approx(m["value"], abs=1e-9), (name, leaf)
