"""Device profiles: the built-in set, user files, and precise validation errors."""

from __future__ import annotations

import textwrap

import pytest
import torch

from evalsuite.devices import list_entries, list_operations
from evalsuite.devices.base import apply_chain
from evalsuite.devices.ops import op_class, op_names
from evalsuite.devices.profiles import builtin_profiles, load_profiles_file, parse_profiles
from evalsuite.errors import UsageError

BUILTIN = {"phone-lowlight", "webcam-720p", "cctv-night", "dslr-daylight", "scanned-print", "older-phone"}


def write(tmp_path, text: str, name: str = "fleet.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_builtin_profiles_load_and_list_their_chains():
    profiles = builtin_profiles()
    assert set(profiles) == BUILTIN
    entries = dict(list_entries())
    assert set(entries) == BUILTIN
    assert entries["webcam-720p"].startswith("lens_blur(radius=0.004) -> ")
    assert "jpeg(quality=45" in entries["webcam-720p"]
    for p in profiles.values():
        assert p.description and p.ops and p.source == "builtin"
        assert p.config()["chain"][0]["op"] == p.ops[0].name
    assert {n for n, _ in list_operations()} == set(op_names())


@pytest.mark.parametrize("size", [(32, 32), (57, 80)])
def test_builtin_profiles_perturb_images_within_range(size):
    torch.manual_seed(0)
    x = (0.2 + 0.6 * torch.rand(2, 3, *size)).clamp(0, 1)
    for name, p in builtin_profiles().items():
        y = apply_chain(p.ops, x, ids=["a", "b"], seed=0, key=f"device/{name}")
        assert y.shape == x.shape
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
        assert float((y - x).abs().mean()) > 0.005, name


def test_user_file_in_every_form(tmp_path):
    single = write(tmp_path, """
        name: doorbell
        description: Doorbell camera at dusk
        chain:
          - op: lens_blur
            radius: 0.006
          - op: jpeg
            severity: 4
            subsampling: "4:4:4"
        """)
    prof = load_profiles_file(single)["doorbell"]
    assert prof.source == str(single)
    jpeg = prof.ops[1]
    assert jpeg.quality == op_class("jpeg").ladder[4]["quality"] and jpeg.subsampling == "4:4:4"
    assert prof.chain_summary() == "lens_blur(radius=0.006) -> jpeg(quality=25, subsampling=4:4:4)"

    as_list = write(tmp_path, """
        version: 1
        profiles:
          - name: cam-a
            chain: [{op: sensor_noise, iso: 3200}]
          - name: cam-b
            chain: [{op: resolution, scale: 0.25, down: nearest}]
        """, "list.yaml")
    assert list(load_profiles_file(as_list)) == ["cam-a", "cam-b"]

    as_map = write(tmp_path, """
        profiles:
          cam-c:
            description: c
            chain: [{op: bayer, pattern: GBRG}]
        """, "map.yaml")
    assert load_profiles_file(as_map)["cam-c"].ops[0].pattern == "GBRG"


@pytest.mark.parametrize(
    "body,pattern",
    [
        ("chain: [{op: jepg}]", r"fleet.yaml: profile 'x', step 1: unknown operation 'jepg' \(did you mean 'jpeg'.*\); valid: bayer, bit_depth"),
        ("chain: [{op: jpeg, qualty: 50}]",
         r"step 1: jpeg: unknown parameter 'qualty' \(did you mean 'quality'\?\); valid: quality, subsampling, backend"),
        ("chain: [{op: lens_blur}, {op: jpeg, quality: 120}]",
         r"fleet.yaml: profile 'x', step 2: jpeg: quality must be an integer in \[1, 100\], got 120"),
        ("chain: [{op: sensor_noise, iso: high}]", r"step 1: sensor_noise: iso must be a number in \[25, 409600\], got 'high'"),
        ("chain: [{op: jpeg, severity: 7}]", r"step 1: jpeg: severity must be an integer in 1-5, got 7"),
        ("chain: [{op: resolution, down: area, antialias: true}]", r"antialias applies to bilinear/bicubic"),
        ("chain: [jpeg]", r"step 1: a step must be a mapping with an 'op' key, got 'jpeg'"),
        ("chain: []", r"profile 'x': 'chain' must be a non-empty list of steps"),
        ("chian: [{op: jpeg}]", r"profile 'x': unknown key 'chian' \(did you mean 'chain'\?\); valid: name, description, chain"),
    ],
)
def test_profile_errors_are_precise(tmp_path, body, pattern):
    path = write(tmp_path, "name: x\n" + body + "\n")
    with pytest.raises(UsageError, match=pattern):
        load_profiles_file(path)


def test_profile_file_level_errors(tmp_path):
    with pytest.raises(UsageError, match=r"device profiles file not found: .*missing.yaml"):
        load_profiles_file(tmp_path / "missing.yaml")
    bad_yaml = write(tmp_path, "name: x\nchain: [{op: jpeg\n", "bad.yaml")
    with pytest.raises(UsageError, match=r"bad.yaml: invalid YAML \(line \d+, column \d+\)"):
        load_profiles_file(bad_yaml)
    clash = write(tmp_path, "name: webcam-720p\nchain: [{op: jpeg}]\n", "clash.yaml")
    with pytest.raises(UsageError, match=r"profile 'webcam-720p' has the name of a built-in profile; rename it"):
        load_profiles_file(clash)
    for name, msg in (("worst", r"profile name 'worst' is reserved"), ("a/b", r"profile name must be letters")):
        with pytest.raises(UsageError, match=msg):
            parse_profiles({"name": name, "chain": [{"op": "jpeg"}]}, "f.yaml")
    with pytest.raises(UsageError, match=r"profile 'a' is defined twice"):
        parse_profiles({"profiles": [{"name": "a", "chain": [{"op": "jpeg"}]}] * 2}, "f.yaml")
    with pytest.raises(UsageError, match=r"unknown top-level key 'profile'; valid: profiles, version"):
        parse_profiles({"profiles": [], "profile": 1}, "f.yaml")
    with pytest.raises(UsageError, match=r"'profiles' is empty"):
        parse_profiles({"profiles": []}, "f.yaml")
    with pytest.raises(UsageError, match=r"expected a profile mapping"):
        parse_profiles(["a"], "f.yaml")
    with pytest.raises(UsageError, match=r"'name' \('b'\) differs from its key"):
        parse_profiles({"profiles": {"a": {"name": "b", "chain": [{"op": "jpeg"}]}}}, "f.yaml")


def test_docs_cover_every_operation_parameter_and_profile():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "devices.md").read_text()
    for name in op_names():
        assert f"`{name}`" in text, name
        for param in op_class(name).params:
            assert f"`{param}`" in text, (name, param)
    for name in BUILTIN:
        assert f"`{name}`" in text, name
