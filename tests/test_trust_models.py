"""Hostile and careless model files: pickled .pt2 archives, metadata that names files, integer
checkpoints, probabilities scored as logits. Every case: exit code, one-line message naming the
problem, no traceback, and the state of --out afterwards."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from evalsuite.models.export import METADATA_KEY, preprocessing_dict, write_metadata
from tests.trust_cli import assert_input_error, assert_out_untouched, run_cli, tree_digest

QUICK = ["--suite", "quick", "--data", "builtin:digits", "--limit", "40", "--device", "cpu"]
DIGITS = [str(i) for i in range(10)]


class _TouchOnUnpickle:
    """Unpickling this opens ``marker`` for writing: proof that the unpickler ran attacker code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ------------------------------------------------------------------------------- .pt2 archives
@pytest.fixture(scope="module")
def plain_pt2(digits_model, tmp_path_factory):
    """A real torch.export archive of the trained digits CNN, preprocessing in its extra files."""
    import torch

    path = tmp_path_factory.mktemp("pt2") / "digits.pt2"
    program = torch.export.export(digits_model.network.eval(), (torch.rand(4, 3, 32, 32),))
    meta = preprocessing_dict(input_size=(32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, class_names=DIGITS)
    torch.export.save(program, str(path), extra_files={METADATA_KEY: json.dumps(meta)})
    return path


def _rewrite(src: Path, dst: Path, changes: dict[str, bytes | None]) -> Path:
    """Copy a zip archive, replacing (bytes), deleting (None) or adding members below its root."""
    with zipfile.ZipFile(src) as zin:
        root = zin.namelist()[0].split("/", 1)[0]
        members = {n.split("/", 1)[1]: zin.read(n) for n in zin.namelist()}
    for rel, data in changes.items():
        if data is None:
            members.pop(rel, None)
        else:
            members[rel] = data
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for rel, data in members.items():
            zout.writestr(f"{root}/{rel}", data)
    return dst


def _read(path: Path, rel: str) -> bytes:
    with zipfile.ZipFile(path) as z:
        return z.read(next(n for n in z.namelist() if n.split("/", 1)[1] == rel))


WEIGHTS_CONFIG = "data/weights/model_weights_config.json"
CONSTANTS_CONFIG = "data/constants/model_constants_config.json"


def _pickled_weight_archive(plain: Path, dst: Path, marker: Path) -> Path:
    """The first weight's config says use_pickle: true and its payload is a hostile pickle."""
    config = json.loads(_read(plain, WEIGHTS_CONFIG))
    fqn, meta = next(iter(config["config"].items()))
    meta["use_pickle"] = True
    return _rewrite(plain, dst, {
        WEIGHTS_CONFIG: json.dumps(config).encode(),
        f"data/weights/{meta['path_name']}": pickle.dumps(_TouchOnUnpickle(str(marker))),
    })


def test_plain_pt2_passes_the_check_and_runs(plain_pt2, tmp_path, capsys):
    from evalsuite.models.pt2_archive import check_pt2_archive

    check_pt2_archive(plain_pt2)
    code, out, err = run_cli(["inspect", plain_pt2, "--device", "cpu"], capsys)
    assert code == 0, err
    assert "torch.export" in out
    code, _, err = run_cli(["run", plain_pt2, *QUICK, "--out", tmp_path / "o"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "o" / "results.json").read_text())["model"]["format"] == "torch.export"


def test_the_pickled_archive_really_runs_code_in_torch(plain_pt2, tmp_path):
    """The hostile fixture is real: torch.export.load by itself creates the marker."""
    marker = tmp_path / "pwned-by-torch"
    bad = _pickled_weight_archive(plain_pt2, tmp_path / "bad.pt2", marker)
    code = f"import torch\ntry:\n    torch.export.load({str(bad)!r})\nexcept Exception:\n    pass\n"
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300, check=False)
    assert marker.exists()


@pytest.mark.parametrize("command", ["inspect", "run"])
def test_pt2_with_pickled_weight_is_refused_before_loading(command, plain_pt2, tmp_path, capsys):
    marker = tmp_path / "pwned"
    bad = _pickled_weight_archive(plain_pt2, tmp_path / "bad.pt2", marker)
    out = tmp_path / "out"
    args = ["inspect", bad, "--device", "cpu"] if command == "inspect" else ["run", bad, *QUICK, "--out", out]
    code, stdout, err = run_cli(args, capsys)
    assert_input_error(code, err, "bad.pt2", WEIGHTS_CONFIG, "use_pickle")
    assert not marker.exists()
    assert stdout == ""
    assert_out_untouched(out, {})


def test_pt2_refused_leaves_an_existing_run_untouched(plain_pt2, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(["run", plain_pt2, *QUICK, "--out", out], capsys)[0] == 0
    before = tree_digest(out)
    marker = tmp_path / "pwned"
    bad = _pickled_weight_archive(plain_pt2, tmp_path / "bad.pt2", marker)
    code, _, err = run_cli(["run", bad, *QUICK, "--out", out], capsys)
    assert_input_error(code, err, "bad.pt2", "use_pickle")
    assert not marker.exists()
    assert_out_untouched(out, before)


def _constants_with(entry: dict) -> bytes:
    return json.dumps({"config": {"obj": entry}}).encode()


HOSTILE_CASES = {
    "opaque object constant": (
        lambda m: {CONSTANTS_CONFIG: _constants_with({"path_name": "opaque_obj_0", "is_param": False,
                                                      "use_pickle": True, "tensor_meta": None}),
                   "data/constants/opaque_obj_0": pickle.dumps(_TouchOnUnpickle(m))},
        [CONSTANTS_CONFIG, "pickled"]),
    "custom object constant without use_pickle": (
        lambda m: {CONSTANTS_CONFIG: _constants_with({"path_name": "custom_obj_0", "is_param": False,
                                                      "use_pickle": False, "tensor_meta": {}}),
                   "data/constants/custom_obj_0": pickle.dumps(_TouchOnUnpickle(m))},
        [CONSTANTS_CONFIG, "custom_obj_0", "pickled object"]),
    "pickle member": (lambda m: {"extra/payload.pkl": pickle.dumps(_TouchOnUnpickle(m))}, ["payload.pkl", "pickle"]),
    "legacy weights file": (lambda m: {"data/weights/model.pt": pickle.dumps(_TouchOnUnpickle(m))},
                            ["data/weights/model.pt", "legacy"]),
    "aotinductor library": (lambda m: {"data/aotinductor/model/model.so": b"\x7fELF"}, ["aotinductor", "native code"]),
    "malformed weights config": (lambda m: {WEIGHTS_CONFIG: b"{not json"}, [WEIGHTS_CONFIG, "not valid JSON"]),
    "missing weights config": (lambda m: {WEIGHTS_CONFIG: None}, [WEIGHTS_CONFIG, "missing"]),
    "use_pickle not a boolean": (lambda m: {WEIGHTS_CONFIG: json.dumps({"config": {"w": {
        "path_name": "weight_0", "is_param": True, "use_pickle": "no", "tensor_meta": {}}}}).encode()},
        [WEIGHTS_CONFIG, "malformed"]),
    "old layout": (lambda m: {"archive_format": None}, ["archive_format", "missing"]),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CASES))
def test_pt2_hostile_members_are_refused(case, plain_pt2, tmp_path, capsys):
    marker = tmp_path / "pwned"
    changes, needles = HOSTILE_CASES[case]
    bad = _rewrite(plain_pt2, tmp_path / "bad.pt2", changes(str(marker)))
    code, _, err = run_cli(["inspect", bad, "--device", "cpu"], capsys)
    assert_input_error(code, err, "bad.pt2", *needles)
    assert not marker.exists()


def test_pt2_sample_inputs_that_need_full_unpickling_are_refused(plain_pt2, tmp_path, capsys):
    """torch retries sample inputs with weights_only=False; the check accepts only what weights_only=True reads."""
    import io

    import torch

    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save(((_TouchOnUnpickle(str(marker)),), {}), buf)
    bad = _rewrite(plain_pt2, tmp_path / "bad.pt2", {"data/sample_inputs/model.pt": buf.getvalue()})
    code, _, err = run_cli(["run", bad, *QUICK, "--out", tmp_path / "o"], capsys)
    assert_input_error(code, err, "bad.pt2", "data/sample_inputs/model.pt", "unrestricted unpickler")
    assert not marker.exists()
    assert_out_untouched(tmp_path / "o", {})


def test_pt2_graph_calling_python_is_refused(plain_pt2, tmp_path, capsys):
    """A node target is any attribute chain under torch (torch.os.system): only operators may run."""
    program = json.loads(_read(plain_pt2, "models/model.json"))
    program["graph_module"]["graph"]["nodes"][0]["target"] = "torch.os.system"
    bad = _rewrite(plain_pt2, tmp_path / "bad.pt2", {"models/model.json": json.dumps(program).encode()})
    code, _, err = run_cli(["inspect", bad, "--device", "cpu"], capsys)
    assert_input_error(code, err, "bad.pt2", "models/model.json", "torch.os.system", "not a torch operator")


def test_pt2_duplicate_member_is_refused(plain_pt2, tmp_path, capsys):
    bad = tmp_path / "dup.pt2"
    shutil.copy(plain_pt2, bad)
    with zipfile.ZipFile(bad) as z:
        name = next(n for n in z.namelist() if n.endswith(WEIGHTS_CONFIG))
    with pytest.warns(UserWarning), zipfile.ZipFile(bad, "a") as z:
        z.writestr(name, b'{"config": {}}')
    code, _, err = run_cli(["inspect", bad, "--device", "cpu"], capsys)
    assert_input_error(code, err, "dup.pt2", "appears twice")


def test_safe_targets():
    from evalsuite.models.pt2_archive import safe_target

    for ok in ("torch.ops.aten.conv2d.default", "torch.ops.higher_order.cond", "_operator.getitem",
               "torch.sym_max", "math.ceil"):
        assert safe_target(ok), ok
    for bad in ("torch.os.system", "torch.ops.load_library", "torch.ops.aten.__class__.__init__",
                "torch.load", "builtins.eval", "math.__loader__", "#custom", "torch.ops.import_module.x.y"):
        assert not safe_target(bad), bad


# ------------------------------------------------------------------------- class names are data
def _onnx_with_metadata(src: Path, dst: Path, **fields) -> Path:
    shutil.copy(src, dst)
    meta = preprocessing_dict(input_size=(32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, class_names=DIGITS)
    meta.update(fields)
    write_metadata(dst, meta)
    return dst


@pytest.fixture()
def secret_file(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("".join(f"SECRET{i}\n" for i in range(10)))  # as many lines as the model has classes
    return path


@pytest.mark.parametrize("where", ["metadata_props", "sidecar"])
def test_class_names_naming_a_file_are_never_read(where, digits_onnx, secret_file, tmp_path, capsys):
    model = tmp_path / "m.onnx"
    if where == "metadata_props":
        _onnx_with_metadata(digits_onnx, model, class_names=str(secret_file))
    else:
        shutil.copy(digits_onnx, model)
        (tmp_path / "m.onnx.json").write_text(json.dumps({"class_names": str(secret_file)}))
    code, out, err = run_cli(["inspect", model, "--device", "cpu"], capsys)
    assert_input_error(code, err, "m.onnx", "1 class names", "10 logits")
    assert "SECRET" not in out + err
    run_out = tmp_path / "out"
    code, out, err = run_cli(["run", model, *QUICK, "--out", run_out], capsys)
    assert_input_error(code, err, "1 class names")
    assert "SECRET" not in out + err
    assert_out_untouched(run_out, {})


def test_class_names_json_list_string_is_a_list(digits_onnx, tmp_path, capsys):
    model = _onnx_with_metadata(digits_onnx, tmp_path / "m.onnx", class_names=json.dumps(list("abcdefghij")))
    code, out, err = run_cli(["inspect", model, "--device", "cpu", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["info"]["class_names"] == list("abcdefghij")


def test_class_names_at_file_from_the_command_line(digits_onnx, secret_file, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(DIGITS[:5]) + "\n\n  \n" + "\n".join(DIGITS[5:]) + "\n")
    code, out, err = run_cli(["inspect", digits_onnx, "--device", "cpu", "--json", "--class-names", f"@{labels}"], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert info["info"]["class_names"] == DIGITS and info["metadata_fields"]["class_names"] == "flags"
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", tmp_path / "o", "--class-names", f"@{labels}"], capsys)
    assert code == 0, err


@pytest.mark.parametrize("kind", ["missing", "empty", "directory", "binary"])
def test_class_names_at_file_errors(kind, digits_onnx, tmp_path, capsys):
    path = tmp_path / f"labels-{kind}"
    if kind == "empty":
        path.write_text("\n  \n")
    elif kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe\x00bad")
    needle = {"missing": "no such file", "empty": "no class names", "directory": "directory",
              "binary": "not UTF-8"}[kind]
    out = tmp_path / "out"
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", out, "--class-names", f"@{path}"], capsys)
    assert_input_error(code, err, "--class-names", str(path), needle)
    assert_out_untouched(out, {})


# ------------------------------------------------------------------ integer checkpoint weights
@pytest.fixture(scope="module")
def resnet_state():
    import timm
    import torch

    torch.manual_seed(0)
    return timm.create_model("test_resnet", pretrained=False, num_classes=10).eval().state_dict()


def test_integer_buffers_still_load(resnet_state, tmp_path, capsys):
    from safetensors.torch import save_file

    assert any(not v.is_floating_point() for v in resnet_state.values())  # num_batches_tracked
    ckpt = tmp_path / "w.safetensors"
    save_file(dict(resnet_state), str(ckpt))
    code, _, err = run_cli(["inspect", "timm:test_resnet", "--checkpoint", ckpt, "--input-size", "32",
                            "--device", "cpu"], capsys)
    assert code == 0, err


@pytest.mark.parametrize("dtype", ["int32", "bool", "uint8"])
def test_integer_weights_for_float_parameters_are_refused(dtype, resnet_state, tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    state = dict(resnet_state)
    key = next(k for k, v in state.items() if k.endswith("weight") and v.is_floating_point())
    state[key] = state[key].round().to(getattr(torch, dtype))
    ckpt = tmp_path / "w.safetensors"
    save_file(state, str(ckpt))
    out = tmp_path / "out"
    code, _, err = run_cli(["run", "timm:test_resnet", "--checkpoint", ckpt, "--input-size", "32", *QUICK,
                            "--out", out], capsys)
    assert_input_error(code, err, "w.safetensors", repr(key), dtype, "float32")
    assert_out_untouched(out, {})


def test_integer_weights_in_a_torch_state_dict_are_refused(resnet_state, tmp_path, capsys):
    import torch

    state = {k: (v.to(torch.int64) if k == "fc.weight" else v) for k, v in resnet_state.items()}
    ckpt = tmp_path / "w.pt"
    torch.save(state, ckpt)
    code, _, err = run_cli(["inspect", "timm:test_resnet", "--checkpoint", ckpt, "--input-size", "32",
                            "--device", "cpu"], capsys)
    assert_input_error(code, err, "w.pt", "'fc.weight'", "int64")


# -------------------------------------------------------------------- probabilities as logits
@pytest.fixture(scope="module")
def softmax_onnx(digits_model, tmp_path_factory):
    """The digits CNN followed by Softmax: an ONNX model whose outputs are probabilities."""
    import torch

    from evalsuite.models.export import export_onnx

    net = torch.nn.Sequential(digits_model.network, torch.nn.Softmax(dim=1)).eval()
    path = tmp_path_factory.mktemp("softmax") / "softmax.onnx"
    export_onnx(net, path, input_size=(32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, class_names=DIGITS)
    return path


def test_undeclared_probabilities_are_refused(softmax_onnx, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(["run", softmax_onnx, *QUICK, "--out", out], capsys)
    line = assert_input_error(code, err, "softmax.onnx", "look like probabilities", "--outputs probabilities",
                              "--outputs logits")
    assert len(line) < 400
    assert_out_untouched(out, {})


def test_declared_probabilities_are_scored_as_log_probabilities(softmax_onnx, tmp_path, capsys):
    from evalsuite.data.builtin import digits_arrays
    from evalsuite.models import load_model

    out = tmp_path / "out"
    code, _, err = run_cli(["run", softmax_onnx, *QUICK, "--out", out, "--outputs", "probabilities"], capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["extra"]["outputs"] == "probabilities"
    images, labels, _, splits = digits_arrays()
    first = splits["test"][:40]  # builtin:digits is the test split; --limit takes the first 40
    raw = load_model(str(softmax_onnx), device="cpu", overrides={"outputs": "logits"})  # the raw probabilities
    p = raw.predict(images[first].transpose(0, 3, 1, 2).astype(np.float32) / 255.0).astype(np.float64)
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    by_hand = float(np.mean(-np.log(np.maximum(p[np.arange(40), labels[first]], 1e-45))))
    nll = results["metrics"]["clean"]["nll"]
    assert nll["n"] == 40
    assert nll["value"] == pytest.approx(by_hand, rel=1e-4, abs=1e-5)


def test_declared_probabilities_in_metadata(softmax_onnx, tmp_path, capsys):
    model = _onnx_with_metadata(softmax_onnx, tmp_path / "declared.onnx", outputs="probabilities")
    code, _, err = run_cli(["run", model, *QUICK, "--out", tmp_path / "o"], capsys)
    assert code == 0, err
    wrong = _onnx_with_metadata(softmax_onnx, tmp_path / "wrong.onnx", outputs="probs")
    code, _, err = run_cli(["inspect", wrong, "--device", "cpu"], capsys)
    assert_input_error(code, err, "wrong.onnx", "outputs", "logits or probabilities")


def test_outputs_logits_asserts_they_are_logits(softmax_onnx, tmp_path, capsys):
    code, _, err = run_cli(["run", softmax_onnx, *QUICK, "--out", tmp_path / "o", "--outputs", "logits"], capsys)
    assert code in (0, 1), err  # scored as declared; gates may fail, but no refusal
    assert "evalsuite: error" not in err


def test_probabilities_declared_for_a_logits_model_is_refused(digits_onnx, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--out", out, "--outputs", "probabilities"], capsys)
    assert_input_error(code, err, "digits.onnx", "declared outputs 'probabilities' but they are not")
    assert_out_untouched(out, {})


def test_check_output_kind_unit():
    from evalsuite.errors import ModelError
    from evalsuite.models.outputs import check_output_kind, looks_like_probabilities

    p = np.array([[0.2, 0.8], [0.5, 0.5]], dtype=np.float32)
    assert looks_like_probabilities(p)
    assert not looks_like_probabilities(np.array([[0.2, 0.7], [0.5, 0.5]]))
    assert not looks_like_probabilities(np.array([[-0.2, 1.2], [0.5, 0.5]]))
    assert not looks_like_probabilities(np.zeros((0, 2)))
    check_output_kind(p, "probabilities", "m")
    check_output_kind(p, "logits", "m")
    with pytest.raises(ModelError, match="look like probabilities"):
        check_output_kind(p, None, "m")


def test_declared_probabilities_keep_white_box_attacks(softmax_onnx):
    """The ONNX gradient bridge of a declared-probability model is checked probabilities against
    probabilities and then logged like predict(): the attacks stay white-box."""
    import torch

    from evalsuite.models import load_model

    model = load_model(str(softmax_onnx), device="cpu", overrides={"outputs": "probabilities"})
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    module, check = model.checked_torch_module(x, tolerance=1e-4)
    assert check["used"] and any("declared probabilities" in n for n in check["notes"])
    with torch.no_grad():
        out = module(x).numpy()
    assert np.allclose(out, model.predict(x), atol=1e-4)  # log-probabilities, like predict
    x.requires_grad_(True)
    module(x)[:, 3].sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
