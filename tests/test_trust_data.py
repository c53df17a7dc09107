"""Hostile data given to `evalsuite run --data`: decompression bombs (npz and image headers),
images without pixels, object arrays, symbolic links out of the data folder. Every refused case:
exit 2, one-line message naming the file and the problem, no traceback, no results in --out."""

from __future__ import annotations

import io
import os
import struct
import time
import tracemalloc
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format
from PIL import Image

from evalsuite.data import decode_image, open_dataset
from evalsuite.data.guards import DEFAULT_MAX_IMAGE_PIXELS, check_image_pixels
from evalsuite.errors import DataError
from tests.trust_cli import assert_input_error, assert_out_untouched, run_cli

QUICK = ["--suite", "quick"]


# ------------------------------------------------------------------------------- helpers
def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width x height`` RGB but whose IDAT holds almost nothing."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def _npy(shape: tuple[int, ...], dtype: str = "|u1", payload: bytes = b"", version: int = 1) -> bytes:
    """An .npy member: a header declaring ``shape`` / ``dtype`` written by numpy, then ``payload``."""
    buf = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    (npy_format.write_array_header_1_0 if version == 1 else npy_format.write_array_header_2_0)(buf, header)
    return buf.getvalue() + payload


def _npz(path: Path, members: dict[str, bytes]) -> Path:
    """A deflated zip of raw members (``images.npy`` -> bytes), as numpy.savez_compressed lays it out."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _labels_npy(n: int) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(n, dtype=np.int64) % 10)
    return buf.getvalue()


@pytest.fixture(scope="module")
def digit_pngs(digits_data):
    """Twenty 32x32 digit images (two per class) as PNG bytes, keyed by (class, index)."""
    images, labels, _, splits = digits_data
    out: dict[tuple[str, int], bytes] = {}
    test = splits["test"]
    for c in range(10):
        for k, i in enumerate(test[labels[test] == c][:2]):
            buf = io.BytesIO()
            Image.fromarray(images[i]).save(buf, "PNG")
            out[(str(c), k)] = buf.getvalue()
    return out


def _folder(root: Path, pngs: dict[tuple[str, int], bytes]) -> Path:
    for (cls, k), data in pngs.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        (root / cls / f"{k}.png").write_bytes(data)
    return root


def _refused(digits_onnx, data: Path | str, tmp_path: Path, capsys, *needles: str, extra: list[str] | None = None) -> str:
    """Run on ``data``; assert exit 2, one line naming every needle, nothing in --out. The line."""
    out = tmp_path / "out"
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--data", data, "--out", out, *(extra or [])], capsys)
    line = assert_input_error(code, err, *needles)
    assert "Warning" not in err, err  # no raw DecompressionBombWarning / RuntimeWarning
    assert_out_untouched(out, {})
    assert not (out / "results.json").exists()
    return line


def _accepted(digits_onnx, data: Path | str, tmp_path: Path, capsys, extra: list[str] | None = None) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--data", data, "--out", out, *(extra or [])], capsys)
    assert code in (0, 1), err  # 1 is a failed gate on twenty images, still a finished run
    assert (out / "results.json").is_file()


# ---------------------------------------------------------------------------- npz headers
def test_npz_declaring_petabytes_is_refused_fast_without_allocating(digits_onnx, tmp_path, capsys):
    bomb = _npz(tmp_path / "bomb.npz", {"images.npy": _npy((100_000, 8192, 8192, 3), payload=b"\0" * 64),
                                        "labels.npy": _labels_npy(100_000)})
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(DataError, match="bomb.npz"):
            open_dataset(str(bomb))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 1.0
    assert peak < 32 * 2**20, f"allocated {peak} bytes while refusing"
    line = _refused(digits_onnx, bomb, tmp_path, capsys, "bomb.npz", "100000 x 8192 x 8192 x 3", "18.3 TiB")
    assert "more than the" in line


def test_npz_zeros_bomb_with_honest_sizes_is_refused_by_its_compression_ratio(digits_onnx, tmp_path, capsys):
    # 96 MiB of zeros deflate to about 100 KB: sizes in the zip directory are consistent, only the ratio gives it away
    n = 96 * 1024
    bomb = tmp_path / "zeros.npz"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("images.npy", "w") as fh:
            fh.write(_npy((n, 32, 32, 1)))
            block = b"\0" * (32 * 32 * 1024)
            for _ in range(n // 1024):
                fh.write(block)
        zf.writestr("labels.npy", _labels_npy(n))
    assert bomb.stat().st_size < 2 * 2**20
    _refused(digits_onnx, bomb, tmp_path, capsys, "zeros.npz", "compressed", "numpy.savez")


def test_npz_declared_size_not_matching_the_zip_directory_is_refused(digits_onnx, tmp_path, capsys):
    short = _npz(tmp_path / "short.npz", {"images.npy": _npy((4, 32, 32, 3), payload=b"\x80" * 10),
                                          "labels.npy": _labels_npy(4)})
    _refused(digits_onnx, short, tmp_path, capsys, "short.npz", "'images'", "lists", "damaged or crafted")


def test_npz_object_array_is_refused_before_unpickling(digits_onnx, tmp_path, capsys):
    p = tmp_path / "objects.npz"
    np.savez(p, images=np.zeros((2, 32, 32, 3), np.uint8), labels=np.array([0, 1]),
             site=np.array(["a", None], dtype=object))
    _refused(digits_onnx, p, tmp_path, capsys, "objects.npz", "'site'", "pickle")


@pytest.mark.parametrize("shape", [(3, 0, 32, 3), (3, 32, 0), (3, 0, 0, 1)])
def test_npz_images_without_pixels_are_refused(shape, digits_onnx, tmp_path, capsys):
    p = tmp_path / "empty_images.npz"
    np.savez(p, images=np.zeros(shape, np.uint8), labels=np.arange(3))
    _refused(digits_onnx, p, tmp_path, capsys, "empty_images.npz", "no pixels")


def test_npz_images_over_the_pixel_limit_are_refused_before_loading(digits_onnx, tmp_path, capsys):
    p = tmp_path / "big.npz"
    np.savez(p, images=np.zeros((2, 32, 32, 3), np.uint8), labels=np.arange(2))
    _refused(digits_onnx, p, tmp_path, capsys, "big.npz", "32x32", "--max-image-pixels",
             extra=["--max-image-pixels", "1000"])


def test_npz_that_is_not_a_zip_is_refused(digits_onnx, tmp_path, capsys):
    p = tmp_path / "plain.npz"
    np.save(p.with_suffix(".npy"), np.zeros((2, 32, 32, 3), np.uint8))
    p.with_suffix(".npy").rename(p)
    _refused(digits_onnx, p, tmp_path, capsys, "plain.npz", "not a zip")


# ------------------------------------------------------------------------- image headers
def test_png_header_declaring_144_megapixels_is_refused_without_pillow_warning(digits_onnx, digit_pngs, tmp_path,
                                                                               capsys):
    root = _folder(tmp_path / "data", digit_pngs)
    (root / "3" / "huge.png").write_bytes(_png_header_only(12000, 12000))
    line = _refused(digits_onnx, root, tmp_path, capsys, "huge.png", "12000x12000", "144.0 megapixels",
                    "--max-image-pixels")
    assert "DecompressionBomb" not in line
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DataError, match="12000x12000"):
            decode_image(root / "3" / "huge.png")
    assert not [w for w in caught if "DecompressionBomb" in w.category.__name__], caught


def test_png_beyond_pillows_hard_limit_is_our_error_not_pillows(tmp_path):
    p = tmp_path / "giant.png"
    p.write_bytes(_png_header_only(20000, 20000))  # 400 MP: Pillow itself raises DecompressionBombError
    with pytest.raises(DataError, match=r"giant\.png: image is .*400\.0 megapixels.*--max-image-pixels"):
        decode_image(p)


def test_real_image_over_a_lowered_limit_is_refused(digits_onnx, digit_pngs, tmp_path, capsys):
    root = _folder(tmp_path / "data", digit_pngs)
    line = _refused(digits_onnx, root, tmp_path, capsys, ".png", "32x32", "1000 pixels", extra=["--max-image-pixels",
                                                                                                "1000"])
    assert str(root) in line
    assert decode_image(root / "0" / "0.png", max_pixels=1024).shape == (32, 32, 3)  # the limit is inclusive


def test_zero_width_image_in_a_folder_is_refused(digits_onnx, digit_pngs, tmp_path, capsys):
    root = _folder(tmp_path / "data", digit_pngs)
    (root / "5" / "flat.png").write_bytes(_png_header_only(0, 40))
    _refused(digits_onnx, root, tmp_path, capsys, "flat.png", "cannot decode image")
    with pytest.raises(DataError, match="0x40: it has no pixels"):
        check_image_pixels(0, 40, DEFAULT_MAX_IMAGE_PIXELS, "flat.png")


def test_default_limit_admits_phone_and_camera_photos(tmp_path):
    from evalsuite.config import RunConfig

    assert RunConfig(model="m.onnx", data="d").max_image_pixels == DEFAULT_MAX_IMAGE_PIXELS
    for w, h in ((6000, 4000), (8160, 6120), (9504, 6336)):  # 24 MP phone, 50 MP phone sensor, 61 MP camera
        check_image_pixels(w, h, DEFAULT_MAX_IMAGE_PIXELS, "photo.jpg")
    with pytest.raises(DataError, match="--max-image-pixels"):
        check_image_pixels(12000, 12000, DEFAULT_MAX_IMAGE_PIXELS, "bomb.png")
    # a 24 MP header passes the size check: what fails is decoding the crafted, nearly empty pixel data
    p = tmp_path / "phone.png"
    p.write_bytes(_png_header_only(6000, 4000))
    with pytest.raises(DataError, match="cannot decode image") as info:
        decode_image(p)
    assert "megapixels" not in str(info.value)


def test_max_image_pixels_from_a_config_file_is_validated(digits_onnx, digit_pngs, tmp_path, capsys):
    root = _folder(tmp_path / "data", digit_pngs)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"data: {root}\nmax_image_pixels: 0\n")
    out = tmp_path / "out"
    code, _, err = run_cli(["run", digits_onnx, *QUICK, "--config", cfg, "--out", out], capsys)
    assert_input_error(code, err, "max-image-pixels")
    assert_out_untouched(out, {})


# ------------------------------------------------------------------------------ symlinks
def test_folder_symlink_out_of_the_root_is_refused(digits_onnx, digit_pngs, tmp_path, capsys):
    root = _folder(tmp_path / "data", digit_pngs)
    secret = tmp_path / "elsewhere" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(digit_pngs[("7", 0)])
    os.symlink(secret, root / "7" / "link.png")
    line = _refused(digits_onnx, root, tmp_path, capsys, "'7/link.png'", "symbolic link", "--follow-symlinks")
    assert str(secret) in line
    (root / "7" / "link.png").unlink()
    os.symlink(secret.parent, root / "7" / "more")  # a folder link out of the root: the same rule
    _refused(digits_onnx, root, tmp_path, capsys, "'7/more'", "--follow-symlinks")
    (root / "7" / "more").unlink()
    os.symlink(secret.parent, root / "ten")  # ... and a class folder that is such a link
    _refused(digits_onnx, root, tmp_path, capsys, "'ten'", "--follow-symlinks")


def test_folder_symlink_out_of_the_root_is_read_with_follow_symlinks(digits_onnx, digit_pngs, tmp_path, capsys):
    root = _folder(tmp_path / "data", digit_pngs)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "extra.png").write_bytes(digit_pngs[("4", 1)])
    os.symlink(shared, root / "4" / "shared")
    ds = open_dataset(str(root), follow_symlinks=True)
    assert "4/shared/extra.png" in list(ds.ids)
    _accepted(digits_onnx, root, tmp_path, capsys, extra=["--follow-symlinks"])


def test_folder_symlinks_inside_the_root_are_fine(digit_pngs, tmp_path):
    root = _folder(tmp_path / "data", digit_pngs)
    (root / "pool").mkdir()  # a folder of images shared by links, inside the data folder
    (root / "pool" / "x.png").write_bytes(digit_pngs[("2", 0)])
    os.symlink(root / "pool" / "x.png", root / "2" / "x.png")
    os.symlink("../0", root / "1" / "zeros")  # relative link to a sibling class folder
    ds = open_dataset(str(root))
    ids = list(ds.ids)
    assert "2/x.png" in ids and "1/zeros/0.png" in ids
    assert ds.read_image(ids.index("2/x.png")).shape == (32, 32, 3)


def test_symlink_cycles_are_walked_once(digit_pngs, tmp_path):
    root = _folder(tmp_path / "data", digit_pngs)
    os.symlink(".", root / "6" / "again")  # 6/again/again/... forever, without cycle protection
    os.symlink("..", root / "6" / "again_root")  # back to the root: would list every class as 6
    start = time.perf_counter()
    ds = open_dataset(str(root))
    assert time.perf_counter() - start < 10
    assert len(ds) == 20 and len(set(ds.ids)) == 20
    assert [i for i in ds.ids if i.startswith("6/")] == ["6/0.png", "6/1.png"]


def _manifest(folder: Path, rows: list[str], pngs: dict[tuple[str, int], bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in rows:
        target = folder / name
        if not target.exists() and not target.is_symlink() and ".." not in name:
            target.write_bytes(pngs[("1", 0)])
    path = folder / "manifest.csv"
    path.write_text("path,label\n" + "".join(f"{r},1\n" for r in rows))
    return path


def test_manifest_symlink_out_of_its_folder_needs_follow_symlinks(digits_onnx, digit_pngs, tmp_path, capsys):
    secret = tmp_path / "elsewhere" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(digit_pngs[("1", 1)])
    (tmp_path / "data").mkdir()
    os.symlink(secret, tmp_path / "data" / "link.png")
    m = _manifest(tmp_path / "data", ["a.png", "link.png"], digit_pngs)
    line = _refused(digits_onnx, m, tmp_path, capsys, "manifest.csv", "row 2", "'link.png'", "--follow-symlinks")
    assert str(secret) in line
    ds = open_dataset(str(m), follow_symlinks=True)
    assert list(ds.ids) == ["a.png", "link.png"]  # the id is the name the manifest lists, not the target
    _accepted(digits_onnx, m, tmp_path, capsys, extra=["--follow-symlinks"])


def test_manifest_dotdot_path_is_refused_even_with_follow_symlinks(digits_onnx, digit_pngs, tmp_path, capsys):
    (tmp_path / "secret.png").write_bytes(digit_pngs[("1", 1)])
    m = _manifest(tmp_path / "data", ["a.png", "../secret.png"], digit_pngs)
    line = _refused(digits_onnx, m, tmp_path, capsys, "manifest.csv", "row 2", "'../secret.png'", "lies outside",
                    extra=["--follow-symlinks"])
    assert "--follow-symlinks" not in line  # the flag is about symbolic links; it would not help here


# ------------------------------------------------------------------- numpy warnings
def test_manifest_infinite_float_label_is_an_error_not_a_runtime_warning(tmp_path, digit_pngs):
    import pandas as pd

    (tmp_path / "a.png").write_bytes(digit_pngs[("1", 0)])
    (tmp_path / "b.png").write_bytes(digit_pngs[("2", 0)])
    m = tmp_path / "m.parquet"
    pd.DataFrame({"path": ["a.png", "b.png"], "label": [1.0, float("inf")]}).to_parquet(m)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match="row 2 has a non-integer numeric label inf"):
            open_dataset(str(m))
