"""The one atomic writer: readers see the old file or the whole new one."""

from __future__ import annotations

import os

import pytest

from evalsuite.atomic_io import atomic_path, atomic_write_bytes, default_file_mode


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("writer crashed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_a_finished_write_replaces_the_file_with_a_shareable_mode(tmp_path):
    target = tmp_path / "sub" / "model.onnx"
    with atomic_path(target, suffix=".onnx") as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith(".onnx") and tmp.name.startswith(".")
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert os.stat(target).st_mode & 0o777 == default_file_mode()
    atomic_write_bytes(target, b"newer")
    assert target.read_bytes() == b"newer" and sorted(p.name for p in target.parent.iterdir()) == ["model.onnx"]


def test_a_candidate_replaces_its_destination_only_when_committed(tmp_path):
    from evalsuite.atomic_io import atomic_candidate

    dest = tmp_path / "model.onnx"
    dest.write_bytes(b"old")
    with atomic_candidate(dest, suffix=".onnx") as cand:
        assert cand.path.suffix == ".onnx" and cand.path.parent == tmp_path
        cand.path.write_bytes(b"unverified")
    assert dest.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    with atomic_candidate(dest, suffix=".onnx") as cand:
        cand.path.write_bytes(b"verified")
        cand.commit()
    assert dest.read_bytes() == b"verified" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    try:
        with atomic_candidate(dest) as cand:
            cand.path.write_bytes(b"half")
            raise RuntimeError("interrupted")
    except RuntimeError:
        pass
    assert dest.read_bytes() == b"verified" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
