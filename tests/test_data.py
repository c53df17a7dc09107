"""Data readers, decoding rules, label resolution, sampling and the threaded loader."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evalsuite.data import (
    decode_image,
    iter_batches,
    load_images,
    open_dataset,
    preprocess_image,
    resolve_labels,
    select,
)
from evalsuite.data.base import Dataset
from evalsuite.errors import DataError, UsageError


def _img(rng: np.random.Generator, h: int = 12, w: int = 16) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _write(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


@pytest.fixture()
def folder(tmp_path, rng):
    root = tmp_path / "imgs"
    arrays = {}
    for cls, n in (("dog", 3), ("cat", 2)):
        for i in range(n):
            a = _img(rng)
            _write(root / cls / f"{i}.png", a)
            arrays[f"{cls}/{i}.png"] = a
    _write(root / "cat" / "sub" / "x.bmp", a := _img(rng))
    arrays["cat/sub/x.bmp"] = a
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "dog" / ".hidden.png").write_bytes(b"junk")
    (root / "bird").mkdir()
    return root, arrays


# ---------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------


def test_image_folder(folder):
    root, arrays = folder
    ds = open_dataset(str(root))
    assert ds.class_names == ["bird", "cat", "dog"]
    assert list(ds.ids) == ["cat/0.png", "cat/1.png", "cat/sub/x.bmp", "dog/0.png", "dog/1.png", "dog/2.png"]
    assert list(ds.labels) == ["cat", "cat", "cat", "dog", "dog", "dog"]
    for i, sid in enumerate(ds.ids):
        np.testing.assert_array_equal(ds.read_image(i), arrays[sid])
    assert len(ds.fingerprint) == 64 and ds.fingerprint == open_dataset(str(root)).fingerprint


def test_fingerprint_depends_on_content_not_size_or_mtime(folder, rng):
    root, _ = folder
    a = _img(rng)
    target = _write(root / "dog" / "9.bmp", a)  # BMP: uncompressed, so the size cannot change
    before = open_dataset(str(root)).fingerprint
    st = target.stat()
    a[0, 0, 0] ^= 1
    _write(target, a)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = target.stat()
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert open_dataset(str(root)).fingerprint != before


def test_empty_and_missing_and_unknown(tmp_path):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        open_dataset(str(tmp_path / "empty"))
    with pytest.raises(DataError, match="^no such file or directory: .*nope$"):
        open_dataset(str(tmp_path / "nope"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unsupported --data .*builtin:digits"):
        open_dataset(str(tmp_path / "x.txt"))


def _manifest(tmp_path, rng, rows, extra_cols=None, name="m.csv"):
    import pandas as pd

    base = tmp_path / "data"
    for p in rows:
        if not os.path.isabs(p) and ".." not in p:
            _write(base / p, _img(rng))
    cols = {"path": list(rows), "label": ["a", "b", "a"][: len(rows)]}
    cols.update(extra_cols or {})
    df = pd.DataFrame(cols)
    path = base / name
    base.mkdir(parents=True, exist_ok=True)
    if name.endswith(".csv"):
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path)
    return path


@pytest.mark.parametrize("name", ["m.csv", "m.parquet"])
def test_manifest_reads_paths_labels_and_slices(tmp_path, rng, name):
    path = _manifest(tmp_path, rng, ["x/1.png", "2.jpg", "x/3.png"],
                     {"site": ["north", "south", None], "age": [3, 4, 5]}, name=name)
    ds = open_dataset(str(path))
    assert list(ds.ids) == ["x/1.png", "2.jpg", "x/3.png"]
    assert list(ds.labels) == ["a", "b", "a"]
    assert list(ds.columns["site"]) == ["north", "south", None]
    assert list(ds.columns["age"]) == [3, 4, 5]
    assert ds.read_image(1).shape == (12, 16, 3)


def test_manifest_integer_labels(tmp_path, rng):
    import pandas as pd

    path = _manifest(tmp_path, rng, ["1.png", "2.png"])
    pd.DataFrame({"path": ["1.png", "2.png"], "label": [3, 7]}).to_csv(path, index=False)
    ds = open_dataset(str(path))
    assert ds.labels.dtype == np.int64 and list(ds.labels) == [3, 7]
    pd.DataFrame({"path": ["1.png", "2.png"], "label": ["03", "7"]}).to_csv(path, index=False)
    assert list(open_dataset(str(path)).labels) == ["03", "7"]  # no silent "03" -> 3


def test_manifest_refuses_paths_outside_its_folder(tmp_path, rng):
    outside = _write(tmp_path / "secret.png", _img(rng))
    path = _manifest(tmp_path, rng, ["ok.png", "../secret.png"])
    with pytest.raises(DataError, match=r"row 2 path '\.\./secret\.png' lies outside"):
        open_dataset(str(path))
    path = _manifest(tmp_path, rng, ["ok.png", str(outside)])
    with pytest.raises(DataError, match="row 2 .* lies outside"):
        open_dataset(str(path))
    os.symlink(outside, tmp_path / "data" / "link.png")
    path = _manifest(tmp_path, rng, ["ok.png", "link.png"])
    with pytest.raises(DataError, match="row 2 path 'link.png' lies outside"):
        open_dataset(str(path))
    # an absolute path inside the folder is fine and gets a relative id
    inside = tmp_path / "data" / "ok.png"
    path = _manifest(tmp_path, rng, [str(inside), "b.png"])
    assert list(open_dataset(str(path)).ids) == ["ok.png", "b.png"]


def test_manifest_errors(tmp_path, rng):
    import pandas as pd

    p = tmp_path / "m.csv"
    pd.DataFrame({"file": ["a.png"], "class": ["x"]}).to_csv(p, index=False)
    with pytest.raises(DataError, match="lacks column\\(s\\) path, label; found: file, class"):
        open_dataset(str(p))
    pd.DataFrame({"path": ["a.png"], "klass": ["x"]}).to_csv(p, index=False)
    with pytest.raises(DataError, match="lacks column\\(s\\) label$|lacks column\\(s\\) label;"):
        open_dataset(str(p))
    path = _manifest(tmp_path, rng, ["ok.png", "missing.png"])
    (tmp_path / "data" / "missing.png").unlink()
    with pytest.raises(DataError, match="row 2 path 'missing.png': no such file"):
        open_dataset(str(path))
    ds = open_dataset(str(path), skip_bad_images=True)  # the loader reports it as a bad image instead
    batches = list(iter_batches(ds, np.arange(2), 4, input_size=(12, 16), skip_bad=True))
    assert [list(b.ids) for b in batches] == [["ok.png"]] and batches[0].bad == [1]
    path = _manifest(tmp_path, rng, ["ok.png", "ok.png"])
    with pytest.raises(DataError, match="row 2 repeats the path 'ok.png' of row 1"):
        open_dataset(str(path))
    pd.DataFrame({"path": [], "label": []}).to_csv(p, index=False)
    with pytest.raises(DataError, match="no rows"):
        open_dataset(str(p))


def test_npz(tmp_path, rng):
    imgs = rng.integers(0, 256, size=(5, 6, 7, 3), dtype=np.uint8)
    p = tmp_path / "d.npz"
    np.savez(p, images=imgs, labels=np.array([0, 1, 2, 1, 0]), site=np.array(["a", "b", "a", "b", "a"]),
             score=np.arange(5.0))
    ds = open_dataset(str(p))
    assert list(ds.ids) == [f"npz/{i}" for i in range(5)]
    np.testing.assert_array_equal(ds.read_image(3), imgs[3])
    assert list(ds.columns["site"]) == ["a", "b", "a", "b", "a"]
    assert ds.columns["score"].dtype == np.float64

    gray = rng.integers(0, 256, size=(4, 6, 7), dtype=np.uint8)
    np.savez(p, images=gray, labels=np.array(["x", "y", "x", "y"]))
    ds = open_dataset(str(p))
    assert ds.read_image(2).shape == (6, 7, 3)
    np.testing.assert_array_equal(ds.read_image(2)[..., 1], gray[2])
    assert list(ds.labels) == ["x", "y", "x", "y"]

    np.savez(p, images=np.zeros((4, 3, 8, 8), np.uint8), labels=np.zeros(4, int))
    with pytest.raises(DataError, match="looks channels-first"):
        open_dataset(str(p))
    np.savez(p, images=np.zeros((4, 8, 8, 3), np.float32), labels=np.zeros(4, int))
    with pytest.raises(DataError, match="dtype float32; expected uint8"):
        open_dataset(str(p))
    np.savez(p, images=np.zeros((4, 8, 8, 4), np.uint8), labels=np.zeros(4, int))
    with pytest.raises(DataError, match=r"shape \(4, 8, 8, 4\)"):
        open_dataset(str(p))
    np.savez(p, images=np.zeros((4, 8, 8, 3), np.uint8), labels=np.zeros(3, int))
    with pytest.raises(DataError, match="labels has shape"):
        open_dataset(str(p))
    np.savez(p, images=np.zeros((4, 8, 8, 3), np.uint8), labels=np.zeros(4, int), extra=np.zeros(3))
    with pytest.raises(DataError, match="array 'extra' has shape"):
        open_dataset(str(p))
    np.savez(p, images=np.zeros((4, 8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="lacks array\\(s\\) labels"):
        open_dataset(str(p))
    np.savez(p, images=np.zeros((0, 8, 8, 3), np.uint8), labels=np.zeros(0, int))
    with pytest.raises(DataError, match="empty"):
        open_dataset(str(p))


def test_builtin_digits():
    test = open_dataset("builtin:digits")
    assert len(test) == 360 and test.name == "builtin:digits:test"
    assert len(open_dataset("builtin:digits:all")) == 1797
    assert len(open_dataset("builtin:digits:train")) + len(open_dataset("builtin:digits:val")) + 360 == 1797
    assert test.read_image(0).shape == (32, 32, 3)
    with pytest.raises(DataError, match="no split 'tset'.*did you mean 'test'"):
        open_dataset("builtin:digits:tset")
    with pytest.raises(DataError, match="unknown built-in dataset 'builtin:digts'.*did you mean 'digits'"):
        open_dataset("builtin:digts")


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


def test_decode_modes(tmp_path, rng):
    gray = rng.integers(0, 256, size=(5, 6), dtype=np.uint8)
    _write(tmp_path / "g.png", gray)
    out = decode_image(tmp_path / "g.png")
    assert out.shape == (5, 6, 3) and out.dtype == np.uint8
    assert all(np.array_equal(out[..., c], gray) for c in range(3))

    rgba = rng.integers(0, 256, size=(5, 6, 4), dtype=np.uint8)
    _write(tmp_path / "a.png", rgba)
    np.testing.assert_array_equal(decode_image(tmp_path / "a.png"), rgba[..., :3])  # alpha dropped

    pal = Image.fromarray(_img(rng, 5, 6)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(decode_image(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))

    g16 = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    np.testing.assert_array_equal(decode_image(tmp_path / "g16.png")[..., 0], [[0, 1, 255, 128]])


def test_decode_applies_exif_orientation(tmp_path):
    a = np.zeros((4, 10, 3), np.uint8)
    a[:, :5] = 255  # left half white
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "o.png", exif=exif)
    out = decode_image(tmp_path / "o.png")
    assert out.shape == (10, 4, 3)
    assert out[:5].min() == 255 and out[5:].max() == 0  # the white half is now on top


def test_bad_image_error_and_skip(tmp_path, rng):
    root = tmp_path / "imgs"
    for i in range(5):
        _write(root / "a" / f"{i}.png", _img(rng, 8, 8))
    (root / "a" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    full = (root / "a" / "4.png").read_bytes()
    (root / "a" / "4.png").write_bytes(full[: len(full) // 2])  # truncated
    ds = open_dataset(str(root))
    with pytest.raises(DataError, match=r"cannot decode image .*2\.png"):
        ds.read_image(2)
    with pytest.raises(DataError, match=r"2\.png"):
        list(iter_batches(ds, np.arange(5), 2, input_size=(8, 8)))
    batches = list(iter_batches(ds, np.arange(5), 2, input_size=(8, 8), skip_bad=True, workers=2))
    assert [len(b.images) for b in batches] == [2, 1]
    assert sorted(sum((b.bad for b in batches), [])) == [2, 4]
    assert [list(b.ids) for b in batches] == [["a/0.png", "a/1.png"], ["a/3.png"]]
    tail = list(iter_batches(ds, np.array([4]), 2, input_size=(8, 8), skip_bad=True))
    assert len(tail) == 1 and tail[0].images.shape == (0, 8, 8, 3) and tail[0].bad == [4]


# ---------------------------------------------------------------------------------------------
# Label resolution
# ---------------------------------------------------------------------------------------------


def _ds(labels) -> Dataset:
    labels = np.asarray(labels, dtype=object if isinstance(labels[0], str) else None)
    n = len(labels)
    return Dataset(name="t", ids=np.array([f"s{i}" for i in range(n)], dtype=object), labels=labels,
                   columns={}, fingerprint="x", loader=lambda i: np.zeros((2, 2, 3), np.uint8))


def test_resolve_labels():
    np.testing.assert_array_equal(resolve_labels(_ds(["dog", "cat", "dog"]), ["cat", "dog"]), [1, 0, 1])
    out = resolve_labels(_ds([2, 0, 9]), [str(i) for i in range(10)])
    assert out.dtype == np.int64 and list(out) == [2, 0, 9]
    assert list(resolve_labels(_ds([5, 3]), ["3", "5", "7"])) == [1, 0]
    with pytest.raises(DataError, match="2 label\\(s\\) of t are not among the model's classes .*'bird', 'fish'.*"
                       "model classes: 'cat', 'dog'"):
        resolve_labels(_ds(["cat", "bird", "fish", "bird"]), ["cat", "dog"])
    with pytest.raises(DataError, match="'10'.*pass --class-names") as e:
        resolve_labels(_ds([1, 10]), ["cat", "dog"])
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="'10'"):
        resolve_labels(_ds([1, 10]), [str(i) for i in range(10)])
    many = [f"u{i}" for i in range(8)]
    with pytest.raises(DataError, match=r"8 label\(s\).*'u4', \.\.\. \(8 total\)"):
        resolve_labels(_ds(many), ["a"])
    with pytest.raises(DataError, match="expected all integers or all strings"):
        resolve_labels(_ds(np.array([1.5, 2.0])), ["0", "1"])


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------


def test_select_limit_and_sample():
    ds = open_dataset("builtin:digits:all")
    lim = select(ds, limit=7)
    assert list(lim.ids) == list(ds.ids[:7]) and lim.fingerprint != ds.fingerprint
    assert select(ds, limit=10_000) is ds
    s1 = select(ds, sample=100, seed=3)
    s2 = select(ds, sample=100, seed=3)
    s3 = select(ds, sample=100, seed=4)
    assert len(s1) == 100 and list(s1.ids) == list(s2.ids) and list(s1.ids) != list(s3.ids)
    assert s1.fingerprint == s2.fingerprint != s3.fingerprint
    counts = Counter(s1.labels.tolist())
    full = Counter(ds.labels.tolist())
    for c in full:  # proportional allocation by largest remainder: within one of the quota
        assert abs(counts[c] - 100 * full[c] / len(ds)) < 1.0
    assert list(s1.ids) == sorted(s1.ids)  # dataset order kept
    small = select(ds, sample=4, seed=0)
    assert len(small) == 4 and len(set(small.labels.tolist())) == 4


def test_sample_gives_every_class_one_and_handles_imbalance():
    labels = np.array(["a"] * 95 + ["b"] * 4 + ["c"])
    ds = _ds(list(labels))
    s = select(ds, sample=10, seed=0)
    counts = Counter(s.labels.tolist())
    assert counts == {"a": 8, "b": 1, "c": 1}
    with pytest.raises(UsageError, match="not both"):
        select(ds, limit=3, sample=3)
    with pytest.raises(UsageError, match="positive"):
        select(ds, sample=0)


# ---------------------------------------------------------------------------------------------
# Loader
# ---------------------------------------------------------------------------------------------


def test_preprocess_crop_arithmetic():
    # pixel value encodes its coordinates; with resize equal to the shorter side the resize is a no-op
    h, w = 10, 17
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([yy, xx, np.zeros_like(yy)], axis=2).astype(np.uint8)
    out = preprocess_image(img, (6, 8), resize=10)
    top, left = int(round((10 - 6) / 2)), int(round((17 - 8) / 2))  # 2, 4 (round half to even)
    assert (top, left) == (2, 4)
    np.testing.assert_array_equal(out[..., 0], yy[top : top + 6, left : left + 8])
    np.testing.assert_array_equal(out[..., 1], xx[top : top + 6, left : left + 8])
    assert preprocess_image(img, (10, 17)) is img  # already the input size: untouched
    assert preprocess_image(img, (5, 5)).shape == (5, 5, 3)  # straight resize
    padded = preprocess_image(img, (12, 12), resize=10)  # smaller than the crop: zero padding
    assert padded.shape == (12, 12, 3) and padded[0].max() == 0 and padded[-1].max() == 0


@pytest.mark.parametrize("interp", ["bilinear", "bicubic", "nearest"])
def test_preprocess_matches_torchvision(rng, interp):
    import torchvision.transforms as T

    img = _img(rng, 37, 53)
    mode = getattr(T.InterpolationMode, interp.upper())
    for resize, crop in ((30, (24, 24)), (20, (24, 30)), (None, (16, 20))):
        ours = preprocess_image(img, crop, resize, interp)
        steps = [T.Resize(resize if resize else crop, interpolation=mode)] + ([T.CenterCrop(crop)] if resize else [])
        ref = np.asarray(T.Compose(steps)(Image.fromarray(img)))
        np.testing.assert_array_equal(ours, ref)
    with pytest.raises(UsageError, match="did you mean 'bilinear'"):
        preprocess_image(img, (8, 8), interpolation="bilinar")


def test_iter_batches_shapes_order_labels_and_batch_size_invariance(folder):
    root, _ = folder
    ds = open_dataset(str(root))
    idx = np.array([5, 0, 3, 1, 4, 2])
    resolved = resolve_labels(ds, ["cat", "dog"])
    ref = None
    for bs, workers in ((1, 1), (4, 2), (64, 3)):
        batches = list(iter_batches(ds, idx, bs, input_size=(8, 9), resize=10, workers=workers, labels=resolved))
        assert all(b.images.dtype == np.uint8 and b.images.shape[1:] == (8, 9, 3) for b in batches)
        assert [len(b.images) for b in batches][:-1] == [bs] * (len(batches) - 1)
        index = np.concatenate([b.index for b in batches])
        np.testing.assert_array_equal(index, idx)
        np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]), resolved[idx])
        assert list(np.concatenate([b.ids for b in batches])) == list(ds.ids[idx])
        images = np.concatenate([b.images for b in batches])
        if ref is None:
            ref = images
        np.testing.assert_array_equal(images, ref)
    np.testing.assert_array_equal(load_images(ds, idx, input_size=(8, 9), resize=10), ref)
    raw = next(iter_batches(ds, idx, 2, input_size=(8, 9)))
    assert list(raw.labels) == ["dog", "cat"]  # without resolved labels: the raw labels


def test_iter_batches_streams_and_stops_early():
    ds = open_dataset("builtin:digits:all")
    calls = []
    parent = ds.loader

    def counting(i):
        calls.append(i)
        return parent(i)

    ds.loader = counting
    gen = iter_batches(ds, np.arange(len(ds)), 8, input_size=(32, 32), workers=2, prefetch=2)
    first = next(gen)
    assert len(first.images) == 8
    assert len(calls) < 200  # bounded prefetch, not the whole dataset
    gen.close()  # shuts the pool down without hanging
