"""Readers behind the one ``--data`` argument, and the image decoder they share.

Supported forms (see :func:`open_dataset`):

- a folder with one sub-folder per class (``root/<class>/<image>``, nested folders allowed);
- a CSV or Parquet manifest with columns ``path,label`` plus any slice columns;
- an ``.npz`` file with ``images``, ``labels`` and optional per-sample slice arrays;
- ``builtin:digits[:train|val|test|all]`` (scikit-learn's bundled digits, see
  :mod:`evalsuite.data.builtin`).

Readers never resize; they return a :class:`~evalsuite.data.base.Dataset` whose loader decodes
one image to ``H x W x 3`` uint8 RGB. Every dataset carries a sha256 *fingerprint* over its ids,
labels, slice columns and the image *contents* (file bytes are streamed through the hash at
open time, in parallel threads), so results can cite exactly which data they measured.

Decoding rules (:func:`decode_image`), applied the same way to every file:

- EXIF orientation is applied (``ImageOps.exif_transpose``), so a photo is seen upright;
- 8-bit grayscale (``L``, ``1``) is repeated into three channels;
- 16-bit grayscale (``I;16*``) and 32-bit integer (``I``) images are scaled from the
  0..65535 range to 0..255 (``round(v * 255 / 65535)``, values clipped to that range first),
  then repeated into three channels;
- an alpha channel (``RGBA``, ``LA``, ``PA``, palette with transparency) is dropped, keeping
  the stored colour -- the behaviour of ``PIL.Image.convert("RGB")`` that torchvision's and
  timm's loaders also use -- so a model sees the same pixels it saw in training;
- palette, CMYK, YCbCr and other modes go through Pillow's ``convert("RGB")``;
- floating-point images (mode ``F``) are refused: their value range is not defined;
- multi-frame files (TIFF pages) use the first frame;
- the size in the file's header is checked before any pixel is decoded: an image without pixels
  or with more than ``max_pixels`` (``--max-image-pixels``, default
  :data:`~evalsuite.data.guards.DEFAULT_MAX_IMAGE_PIXELS`) is a :class:`DataError` naming the file;
  this check replaces Pillow's own ``DecompressionBombWarning`` / ``DecompressionBombError``.

Every file a folder or manifest names must lie inside the data folder; symbolic links out of it
need ``follow_symlinks`` (``--follow-symlinks``). An ``.npz``'s array headers are read and checked
(dtype, declared sizes against the zip directory and :func:`~evalsuite.data.guards.npz_byte_limit`,
pixels per image) before any array is loaded. The rules live in :mod:`evalsuite.data.guards`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import threading
import warnings
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.data.base import Dataset
from evalsuite.data.guards import (
    DEFAULT_MAX_IMAGE_PIXELS,
    MAX_NPZ_CLASS_NAMES,
    MAX_NPZ_COMPRESSION_RATIO,
    MAX_NPZ_MEMBERS,
    MAX_NPZ_SAMPLES,
    NPZ_RATIO_MIN_BYTES,
    DataRoot,
    check_image_pixels,
    check_max_image_pixels,
    human_bytes,
    is_within,
    npz_byte_limit,
    too_many_pixels,
)
from evalsuite.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MANIFEST_EXTENSIONS = (".csv", ".parquet", ".pq")
BUILTIN_DATASETS = ("digits",)
DIGITS_SPLITS = ("train", "val", "test", "all")

SUPPORTED_FORMS = (
    "a folder with one sub-folder per class, a .csv or .parquet manifest (path,label[,slice columns]), "
    "an .npz (images, labels[, slice arrays]) or builtin:digits[:train|val|test|all]"
)

_HASH_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def open_dataset(
    spec: str,
    *,
    skip_bad_images: bool = False,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    follow_symlinks: bool = False,
) -> Dataset:
    """Open whatever ``--data`` names and return a :class:`Dataset`.

    ``max_image_pixels`` (``--max-image-pixels``) bounds ``width * height`` of every image (checked
    on its header before decoding; for an ``.npz``, on the declared array shape before loading).
    ``follow_symlinks`` (``--follow-symlinks``) lets symbolic links in a folder or manifest lead
    out of the data folder (see :mod:`evalsuite.data.guards`). ``builtin:`` data ignores both.

    ``skip_bad_images`` keeps the table of samples the same but tolerates files that cannot be
    read while fingerprinting (a folder's unreadable file, a manifest row whose file is
    missing): they enter the fingerprint as "unreadable" and the loader later reports them in
    ``Batch.bad`` (:func:`evalsuite.data.loader.iter_batches` with ``skip_bad=True``). Without
    it such a file is a :class:`DataError` naming it.

    Raises :class:`DataError` for a missing path ("no such file or directory: X"), an unknown
    format (listing the supported forms), an empty dataset, a malformed manifest or npz.
    """
    spec = str(spec)
    max_image_pixels = check_max_image_pixels(max_image_pixels)
    if spec.startswith("builtin:"):
        return _open_builtin(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"no such file or directory: {spec}")
    if path.is_dir():
        return read_image_folder(path, name=spec, skip_bad_images=skip_bad_images,
                                 max_image_pixels=max_image_pixels, follow_symlinks=follow_symlinks)
    suffix = path.suffix.lower()
    if suffix in MANIFEST_EXTENSIONS:
        return read_manifest(path, name=spec, skip_bad_images=skip_bad_images,
                             max_image_pixels=max_image_pixels, follow_symlinks=follow_symlinks)
    if suffix == ".npz":
        return read_npz(path, name=spec, max_image_pixels=max_image_pixels)
    raise DataError(f"unsupported --data {spec!r} (suffix {suffix or 'none'!r}); expected {SUPPORTED_FORMS}")


def _open_builtin(spec: str) -> Dataset:
    from evalsuite.registry import did_you_mean

    parts = spec.split(":")
    name = parts[1] if len(parts) > 1 else ""
    if name not in BUILTIN_DATASETS or len(parts) > 3:
        raise DataError(
            f"unknown built-in dataset {spec!r}{did_you_mean(name, list(BUILTIN_DATASETS))}; "
            f"valid: builtin:digits[:{'|'.join(DIGITS_SPLITS)}]"
        )
    split = parts[2] if len(parts) == 3 else "test"
    if split not in DIGITS_SPLITS:
        raise DataError(
            f"builtin:digits has no split {split!r}{did_you_mean(split, list(DIGITS_SPLITS))}; "
            f"valid: {', '.join(DIGITS_SPLITS)}"
        )
    from evalsuite.data.builtin import load_digits_dataset

    return load_digits_dataset(None if split == "all" else split)


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


_PILLOW_FILTER_LOCK = threading.Lock()
_PILLOW_PIXELS = re.compile(r"\((\d+) pixels\)")


def _defer_pillow_bomb_check(image_module: Any, max_pixels: int) -> None:
    """Let evalsuite's pixel limit, not Pillow's, decide which images are too large.

    Pillow checks ``Image.MAX_IMAGE_PIXELS`` inside ``Image.open``, before evalsuite can look at
    the size: above it Pillow emits a raw ``DecompressionBombWarning`` (silenced here, for that
    category only: our own check follows at once), above twice it raises
    ``DecompressionBombError`` (turned into our message by :func:`decode_image`). When the user
    raised ``max_pixels`` beyond twice Pillow's limit, Pillow's limit is raised to match (never
    lowered), or the larger images the user asked for could not be opened at all.
    """
    category = image_module.DecompressionBombWarning
    entry = ("ignore", None, category, None, 0)
    if not warnings.filters or warnings.filters[0] != entry:  # per call: later filters (harnesses) may shadow it
        with _PILLOW_FILTER_LOCK:
            if not warnings.filters or warnings.filters[0] != entry:
                warnings.filterwarnings("ignore", category=category)  # moves it to the front
    current = image_module.MAX_IMAGE_PIXELS
    if current is not None and 2 * current < max_pixels:
        image_module.MAX_IMAGE_PIXELS = max_pixels


def decode_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode one image file to ``H x W x 3`` uint8 RGB (rules in the module docstring).

    The header's size is checked against ``max_pixels`` (and for having any pixels) before the
    pixels are decoded: ``Image.open`` is lazy. Raises :class:`DataError` naming the file when
    it is too large, cannot be read or cannot be decoded.
    """
    from PIL import Image, ImageOps

    _defer_pillow_bomb_check(Image, max_pixels)
    try:
        with Image.open(path) as img:
            check_image_pixels(img.size[0], img.size[1], max_pixels, path)
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb_array(img, path)
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        found = _PILLOW_PIXELS.search(str(exc))
        pixels = int(found.group(1)) if found else 2 * (Image.MAX_IMAGE_PIXELS or 0) + 1
        raise too_many_pixels(path, f"{pixels} pixels", pixels, max_pixels) from None
    except FileNotFoundError:
        raise DataError(f"cannot read image {path}: file not found") from None
    except Exception as exc:  # Pillow raises many types (UnidentifiedImageError, OSError, SyntaxError...)
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"cannot decode image {path}: {msg}") from None


def _to_rgb_array(img: Any, path: Any) -> np.ndarray:
    mode = img.mode
    if mode == "RGB":
        arr = np.asarray(img)
    elif mode in ("L", "1"):
        arr = np.repeat(np.asarray(img.convert("L"))[:, :, None], 3, axis=2)
    elif mode.startswith("I"):  # I;16, I;16B, I;16L, I;16N, I (32-bit)
        raw = np.asarray(img).astype(np.float64)
        gray = np.rint(np.clip(raw, 0.0, 65535.0) * (255.0 / 65535.0)).astype(np.uint8)
        arr = np.repeat(gray[:, :, None], 3, axis=2)
    elif mode == "F":
        raise DataError(f"cannot decode image {path}: floating-point images (mode F) are not supported")
    elif mode == "LA":
        arr = np.repeat(np.asarray(img)[:, :, :1], 3, axis=2)
    elif mode in ("RGBA", "RGBX", "RGBa"):
        arr = np.asarray(img)[:, :, :3]
    elif mode in ("P", "PA"):
        arr = np.asarray(img.convert("RGBA"))[:, :, :3]
    else:  # CMYK, YCbCr, LAB, HSV, ...
        arr = np.asarray(img.convert("RGB"))
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise DataError(f"cannot decode image {path}: unsupported image mode {mode}")
    return np.ascontiguousarray(arr)


# --------------------------------------------------------------------------------------------
# Fingerprints
# --------------------------------------------------------------------------------------------


_UNREADABLE = b"unreadable"


def _file_digest(path: str, tolerate: bool = False) -> bytes:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while True:
                chunk = fh.read(_HASH_CHUNK)
                if not chunk:
                    break
                h.update(chunk)
    except OSError as exc:
        if tolerate:
            log.warning("cannot read %s (%s); it will be skipped as a bad image", path, exc.strerror or exc)
            return _UNREADABLE
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    return h.digest()


def _file_digests(paths: Sequence[str], tolerate: bool = False) -> list[bytes]:
    """sha256 of every file's contents, read in parallel threads (hashlib releases the GIL)."""
    if len(paths) < 64:
        return [_file_digest(p, tolerate) for p in paths]
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="evalsuite-hash") as pool:
        return list(pool.map(_file_digest, paths, [tolerate] * len(paths), chunksize=64))


def _canonical(value: Any) -> bytes:
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return b"i" + str(int(value)).encode()
    if isinstance(value, (np.floating, float)):
        return b"f" + repr(float(value)).encode()
    return b"s" + str(value).encode("utf-8", "surrogatepass")


def _feed(h: Any, data: bytes) -> None:
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def fingerprint(
    kind: str,
    ids: np.ndarray,
    labels: np.ndarray,
    columns: dict[str, np.ndarray],
    content: Sequence[bytes] | None = None,
    extra: bytes = b"",
) -> str:
    """sha256 over the reader kind, ids, labels, slice columns and per-sample content digests.

    Every field is length-prefixed, so no two different datasets share a byte stream.
    """
    h = hashlib.sha256()
    _feed(h, kind.encode())
    _feed(h, extra)
    for i in range(len(ids)):
        _feed(h, str(ids[i]).encode("utf-8", "surrogatepass"))
        _feed(h, _canonical(labels[i]))
        if content is not None:
            _feed(h, content[i])
    for name in sorted(columns):
        _feed(h, name.encode())
        col = columns[name]
        for v in col:
            _feed(h, _canonical(v))
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Image folder
# --------------------------------------------------------------------------------------------


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def read_image_folder(
    root: str | os.PathLike[str],
    *,
    name: str | None = None,
    skip_bad_images: bool = False,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    follow_symlinks: bool = False,
) -> Dataset:
    """A folder with one sub-folder per class; the folder name is the label.

    ``class_names`` are the sorted names of the (non-hidden) sub-folders; ids are image paths
    relative to ``root`` in POSIX form; images are found recursively inside each class folder;
    files without an image extension ({exts}) and hidden files/folders are ignored.

    Symbolic links inside ``root`` are followed; a class folder, sub-folder or image whose real
    path lies outside ``root`` is a :class:`DataError` naming it unless ``follow_symlinks``
    (:class:`~evalsuite.data.guards.DataRoot`, the rule manifests follow too). Each real folder
    is visited once per class (and ``root`` itself never again), so symlink cycles end. A folder
    that cannot be listed is an error naming it (with ``skip_bad_images``: a warning, and its
    images are left out). Images over ``max_image_pixels`` fail when decoded.
    """
    root = Path(root)
    label = name or str(root)
    guard = DataRoot.at(root, follow_symlinks=follow_symlinks)
    try:
        top = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise DataError(f"cannot list {label}: {exc.strerror or exc}") from None
    classes: list[str] = []
    for entry in top:
        if entry.name.startswith(".") or not _entry_is_dir(entry):
            continue
        if entry.is_symlink():
            _check_in_root(guard, entry.path, root, label)
        classes.append(entry.name)
    rel_paths: list[str] = []
    labels: list[str] = []
    empty: list[str] = []
    for cls in classes:
        found = _images_below(guard, root, cls, label, skip_bad_images)
        if not found:
            empty.append(cls)
        found.sort()
        rel_paths.extend(found)
        labels.extend([cls] * len(found))
    if not rel_paths:
        raise DataError(
            f"no images found in {label} (expected {label}/<class>/<image> with one of "
            f"{', '.join(IMAGE_EXTENSIONS)})"
        )
    if empty:
        log.warning("class folder(s) without images in %s: %s", root, ", ".join(empty))
    ids = np.array(rel_paths, dtype=object)
    label_arr = np.array(labels, dtype=object)
    abs_paths = [str(root / p) for p in rel_paths]
    fp = fingerprint("folder", ids, label_arr, {}, _file_digests(abs_paths, skip_bad_images))
    return Dataset(
        name=label,
        ids=ids,
        labels=label_arr,
        columns={},
        fingerprint=fp,
        loader=_path_loader(abs_paths, max_image_pixels),
        class_names=classes,
    )


def _entry_is_dir(entry: os.DirEntry[str]) -> bool:
    """``entry.is_dir()`` following links; False when it cannot be told (a broken link, EACCES)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _check_in_root(guard: DataRoot, path: str, root: Path, label: str) -> str:
    """The real path of ``path`` (a link below the folder); DataError naming it when it escapes."""
    real, reason = guard.check(path)
    if reason:
        rel = Path(os.path.relpath(path, root)).as_posix()
        raise DataError(f"{label}: {rel!r} {reason}")
    return real


def _images_below(guard: DataRoot, root: Path, cls: str, label: str, tolerate: bool) -> list[str]:
    """Image paths (relative to ``root``, POSIX) found recursively below ``root/cls``.

    Depth-first in sorted order (the order ``os.walk`` used); every symbolic link to an image or
    folder goes through :meth:`DataRoot.check`, and each real folder is entered once.
    """
    found: list[str] = []
    visited = {guard.real}  # a link back to the root would re-list every class under this one
    start = os.path.join(str(root), cls)
    stack = [(start, os.path.realpath(start))]
    while stack:
        dirpath, real = stack.pop()
        if real in visited:  # a symlink cycle or a second link to the same folder
            continue
        visited.add(real)
        try:
            entries = sorted(os.scandir(dirpath), key=lambda e: e.name)
        except OSError as exc:
            rel = Path(os.path.relpath(dirpath, root)).as_posix()
            if not tolerate:
                raise DataError(f"cannot list folder {rel!r} of {label}: {exc.strerror or exc}") from None
            log.warning("cannot list folder %r of %s (%s); its images are left out", rel, label, exc.strerror or exc)
            continue
        subdirs: list[tuple[str, str]] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            is_dir = _entry_is_dir(entry)
            if not is_dir and not _is_image(entry.name):
                continue
            path = os.path.join(dirpath, entry.name)
            link_real = _check_in_root(guard, path, root, label) if entry.is_symlink() else None
            if is_dir:
                subdirs.append((path, link_real or os.path.join(real, entry.name)))
            else:
                found.append(Path(os.path.relpath(path, root)).as_posix())
        stack.extend(reversed(subdirs))
    return found


read_image_folder.__doc__ = (read_image_folder.__doc__ or "").replace("{exts}", ", ".join(IMAGE_EXTENSIONS))


def _path_loader(paths: list[str], max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Callable[[int], np.ndarray]:
    def load(i: int) -> np.ndarray:
        return decode_image(paths[i], max_pixels=max_pixels)

    return load


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


def _read_table(path: Path) -> Any:
    import pandas as pd

    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path, dtype={"path": str, "label": str}, keep_default_na=True)
        return pd.read_parquet(path)
    except Exception as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"cannot read manifest {path}: {msg}") from None


def _column_array(series: Any) -> np.ndarray:
    """A pandas column as numpy: numeric dtypes kept, everything else as an object array of str/None."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        if series.isna().any():
            return series.astype("float64").to_numpy()
        return series.to_numpy()
    values = series.to_numpy(dtype=object, na_value=None)
    return np.array([None if v is None else str(v) for v in values], dtype=object)


def _label_array(series: Any, manifest: Path) -> np.ndarray:
    import pandas as pd

    missing = np.flatnonzero(series.isna().to_numpy())
    if len(missing):
        raise DataError(f"{manifest}: row {int(missing[0]) + 1} has no label")
    if pd.api.types.is_bool_dtype(series.dtype):
        raise DataError(f"{manifest}: the label column holds booleans; use integer or string labels")
    if pd.api.types.is_integer_dtype(series.dtype):
        return series.to_numpy().astype(np.int64)
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.to_numpy()
        # inf or |v| >= 2**63 would make the int64 cast below emit a raw RuntimeWarning and garbage
        frac = np.flatnonzero(~np.isfinite(values) | (np.abs(values) >= 2.0**63) | (values != np.round(values)))
        if len(frac):
            raise DataError(
                f"{manifest}: row {int(frac[0]) + 1} has a non-integer numeric label {float(values[frac[0]])!r}"
            )
        return values.astype(np.int64)
    text = [str(v) for v in series.to_numpy(dtype=object)]
    if all(_is_plain_int(t) for t in text):
        return np.array([int(t) for t in text], dtype=np.int64)
    return np.array(text, dtype=object)


def _is_plain_int(text: str) -> bool:
    """``"3"``, ``"-2"``, ``"10"``; not ``"03"``, ``"+3"``, ``" 3"`` or ``"3.0"``."""
    body = text[1:] if text.startswith("-") else text
    return body.isdigit() and body.isascii() and (body == "0" or not body.startswith("0")) and text != "-0"


def read_manifest(
    manifest: str | os.PathLike[str],
    *,
    name: str | None = None,
    skip_bad_images: bool = False,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    follow_symlinks: bool = False,
) -> Dataset:
    """A CSV/Parquet table with columns ``path`` and ``label``; every other column is a slice column.

    Paths are relative to the manifest's folder (absolute paths are allowed when they lie inside
    it). The manifest's folder is the data root (:class:`~evalsuite.data.guards.DataRoot`, the
    rule image folders follow too): a path that lies outside it by name (``../x.png``) is
    refused, and so is one that leaves it through a symbolic link unless ``follow_symlinks``.
    Paths listed twice and (unless ``skip_bad_images``) missing files are refused too; errors
    name the row (1-based, header not counted). Ids are the paths relative to the manifest's
    folder in POSIX form. In a CSV, labels are read as text and become integers only when every
    label is a plain integer (``"3"``, not ``"03"``), so no label is changed by parsing.
    Images over ``max_image_pixels`` fail when decoded.
    """
    manifest = Path(manifest)
    table = _read_table(manifest)
    missing_cols = [c for c in ("path", "label") if c not in table.columns]
    if missing_cols:
        have = ", ".join(map(str, table.columns)) or "(none)"
        raise DataError(f"manifest {manifest} lacks column(s) {', '.join(missing_cols)}; found: {have}")
    if len(table) == 0:
        raise DataError(f"manifest {manifest} has no rows: the dataset is empty")
    guard = DataRoot.at(manifest.parent, follow_symlinks=follow_symlinks)
    base = guard.real
    rel_paths: list[str] = []
    abs_paths: list[str] = []
    seen: dict[str, int] = {}
    for row, raw in enumerate(table["path"].tolist(), start=1):
        if raw is None or (isinstance(raw, float) and np.isnan(raw)) or str(raw).strip() == "":
            raise DataError(f"{manifest}: row {row} has an empty path")
        given = str(raw)
        joined = given if os.path.isabs(given) else os.path.join(base, given)
        real, reason = guard.check(joined)
        if reason:
            raise DataError(f"{manifest}: row {row} path {given!r} {reason}")
        if real == base:
            raise DataError(f"{manifest}: row {row} path {given!r} names the manifest's folder {base}, not a file")
        if not os.path.isfile(real) and not skip_bad_images:
            raise DataError(f"{manifest}: row {row} path {given!r}: no such file")
        lexical = os.path.abspath(joined)
        if not os.path.isabs(given) and is_within(lexical, base):
            rel = Path(os.path.relpath(lexical, base)).as_posix()
        elif is_within(real, base):
            rel = Path(os.path.relpath(real, base)).as_posix()
        else:  # a link out of the folder (--follow-symlinks): the id is the name it was listed by
            rel = Path(os.path.relpath(lexical, base if is_within(lexical, base) else guard.named)).as_posix()
        if rel in seen:
            raise DataError(f"{manifest}: row {row} repeats the path {given!r} of row {seen[rel]}")
        seen[rel] = row
        rel_paths.append(rel)
        abs_paths.append(real)
    labels = _label_array(table["label"], manifest)
    columns = {str(c): _column_array(table[c]) for c in table.columns if c not in ("path", "label")}
    ids = np.array(rel_paths, dtype=object)
    fp = fingerprint("manifest", ids, labels, columns, _file_digests(abs_paths, skip_bad_images))
    return Dataset(
        name=name or str(manifest),
        ids=ids,
        labels=labels,
        columns=columns,
        fingerprint=fp,
        loader=_path_loader(abs_paths, max_image_pixels),
        class_names=None,
    )


# --------------------------------------------------------------------------------------------
# NPZ
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NpyMember:
    """One array of an ``.npz`` as its ``.npy`` header declares it (nothing loaded yet)."""

    key: str
    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int

    def describe(self) -> str:
        return f"array {self.key!r} ({' x '.join(map(str, self.shape)) or 'scalar'} {self.dtype}, {human_bytes(self.nbytes)})"


def _read_npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, path: Path) -> _NpyMember:
    """Parse one member's ``.npy`` header from the archive stream and check it against the zip directory."""
    from numpy.lib import format as npy_format

    try:
        with zf.open(info) as fh:
            try:
                version = npy_format.read_magic(fh)
            except ValueError:
                raise DataError(f"{path}: member {info.filename!r} is not a .npy array") from None
            if version == (1, 0):
                shape, _, dtype = npy_format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = npy_format.read_array_header_2_0(fh)
            else:
                raise DataError(
                    f"{path}: array {key!r} uses .npy format version {version[0]}.{version[1]}; "
                    "expected 1.0 or 2.0 (what numpy.savez writes)"
                )
            header_bytes = fh.tell()
    except DataError:
        raise
    except Exception as exc:  # zipfile/zlib/numpy raise many types on a damaged or crafted member
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"cannot read npz {path}: array {key!r}: {msg}") from None
    if dtype.hasobject:
        raise DataError(
            f"{path}: array {key!r} holds objects (needs pickle, refused); store strings as fixed-width unicode"
        )
    if any(d < 0 for d in shape):
        raise DataError(f"{path}: array {key!r} declares a negative shape {tuple(shape)}")
    if dtype.itemsize == 0:  # any number of elements in zero bytes: nothing to bound it by
        raise DataError(f"{path}: array {key!r} has the zero-size dtype {dtype}")
    nbytes = math.prod(shape) * dtype.itemsize
    member = _NpyMember(key, info, tuple(int(d) for d in shape), dtype, nbytes)
    _check_npz_bytes(nbytes, member, path)
    if info.file_size != header_bytes + nbytes:
        raise DataError(
            f"{path}: {member.describe()} does not match the archive, which lists {info.file_size} bytes for it "
            f"(expected {header_bytes + nbytes}): the file is damaged or crafted"
        )
    ratio = nbytes / max(1, info.compress_size)
    if info.compress_type != zipfile.ZIP_STORED and nbytes > NPZ_RATIO_MIN_BYTES and ratio > MAX_NPZ_COMPRESSION_RATIO:
        raise DataError(
            f"{path}: {member.describe()} is compressed {ratio:.0f}:1 into {human_bytes(info.compress_size)}, "
            f"more than {MAX_NPZ_COMPRESSION_RATIO}:1 (a decompression bomb's signature; image data compresses "
            "far less); if the data is genuine, save it with numpy.savez (uncompressed)"
        )
    return member


def _check_npz_bytes(total: int, largest: _NpyMember, path: Path) -> None:
    limit, why = npz_byte_limit()
    if total > limit:
        raise DataError(
            f"{path}: declares {human_bytes(total)} of arrays (largest: {largest.describe()}), more than the "
            f"{human_bytes(limit)} an .npz may hold ({why}; it is loaded whole); use an image folder or a manifest"
        )


def _npz_members(zf: zipfile.ZipFile, path: Path) -> dict[str, _NpyMember]:
    """Every member's header, checked (dtype, declared sizes, limits) before any array is loaded."""
    infos = zf.infolist()
    if len(infos) > MAX_NPZ_MEMBERS:
        raise DataError(f"{path}: holds {len(infos)} members, more than the {MAX_NPZ_MEMBERS} an .npz may hold")
    archive_bytes = os.path.getsize(path)
    members: dict[str, _NpyMember] = {}
    for info in infos:
        if info.is_dir():
            continue
        key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        if key in members:
            raise DataError(f"{path}: holds the array {key!r} twice")
        if info.header_offset + info.compress_size > archive_bytes:
            raise DataError(
                f"{path}: member {info.filename!r} claims {info.compress_size} compressed bytes past the end of "
                "the file: it is truncated or crafted"
            )
        members[key] = _read_npy_header(zf, info, key, path)
    if members:
        largest = max(members.values(), key=lambda m: m.nbytes)
        _check_npz_bytes(sum(m.nbytes for m in members.values()), largest, path)
    return members


def _load_npy(zf: zipfile.ZipFile, member: _NpyMember, path: Path) -> np.ndarray:
    from numpy.lib import format as npy_format

    try:
        with zf.open(member.info) as fh:
            return npy_format.read_array(fh, allow_pickle=False)
    except Exception as exc:  # truncated data, bad CRC, decompression errors
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"cannot read npz {path}: array {member.key!r}: {msg}") from None


def read_npz(
    path: str | os.PathLike[str], *, name: str | None = None, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> Dataset:
    """An ``.npz`` with ``images`` and ``labels``; other arrays of length N are slice columns.

    ``images`` must be uint8 ``N x H x W x 3`` RGB; ``N x H x W`` (and ``N x H x W x 1``)
    grayscale is accepted and repeated into three channels (per image, as it is read, so memory
    holds the array once). An optional ``class_names`` array (the label vocabulary, any length)
    becomes ``Dataset.class_names``. Object arrays are refused (loading them needs pickle): store
    strings as fixed-width unicode (``np.array([...], dtype=str)``). Ids are ``npz/<index>``.

    Hostile files are refused before any array is loaded: every member's ``.npy`` header is read
    from the zip and its declared size must match the zip directory's, stay within
    :func:`~evalsuite.data.guards.npz_byte_limit` in total and not compress suspiciously well;
    images must have at least one pixel and at most ``max_image_pixels`` each.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = _npz_members(zf, path)
            missing = [k for k in ("images", "labels") if k not in members]
            if missing:
                raise DataError(
                    f"{path} lacks array(s) {', '.join(missing)}; found: {', '.join(sorted(members)) or '(none)'}"
                )
            n = _check_npz_shapes(members, path, max_image_pixels)
            arrays = {k: _load_npy(zf, m, path) for k, m in members.items()}
    except DataError:
        raise
    except zipfile.BadZipFile as exc:
        raise DataError(f"cannot read npz {path}: not a zip archive of .npy arrays ({exc})") from None
    except Exception as exc:
        raise DataError(f"cannot read npz {path}: {' '.join(str(exc).split()) or type(exc).__name__}") from None
    images = arrays.pop("images")
    raw_labels = arrays.pop("labels")
    class_names = arrays.pop("class_names", None)
    if raw_labels.dtype.kind in "iu":
        if raw_labels.dtype == np.uint64 and len(raw_labels) and int(raw_labels.max()) >= 2**63:
            raise DataError(f"{path}: labels hold values >= 2**63, which are not class indices")
        labels = raw_labels.astype(np.int64)
    elif raw_labels.dtype.kind in "US":
        labels = np.array([_npz_str(v) for v in raw_labels], dtype=object)
    else:
        raise DataError(f"{path}: labels have dtype {raw_labels.dtype}; expected integers or strings")
    columns: dict[str, np.ndarray] = {
        key: np.array([_npz_str(v) for v in arr], dtype=object) if arr.dtype.kind in "US" else arr
        for key, arr in arrays.items()
    }
    ids = np.array([f"npz/{i}" for i in range(n)], dtype=object)
    if images.ndim == 4 and images.shape[3] == 3:
        images = np.ascontiguousarray(images)
    elif not images.flags.c_contiguous:
        images = np.ascontiguousarray(images)
    images.setflags(write=False)
    names = None if class_names is None else [_npz_str(v) for v in np.ravel(class_names)]
    fp = fingerprint("npz", ids, labels, columns, None, extra=_npz_image_digest(images) + repr(names).encode())
    rgb = images.ndim == 4 and images.shape[3] == 3

    def load(i: int) -> np.ndarray:
        if rgb:
            return images[i]
        gray = images[i].reshape(images.shape[1], images.shape[2], 1)
        return np.repeat(gray, 3, axis=2)

    return Dataset(
        name=name or str(path),
        ids=ids,
        labels=labels,
        columns=columns,
        fingerprint=fp,
        loader=load,
        class_names=names,
    )


def _npz_image_digest(images: np.ndarray) -> bytes:
    """sha256 over the ``N x H x W x 3`` shape and bytes of the images (grayscale repeated in chunks).

    The same digest a fully expanded, contiguous RGB array would give, without holding it.
    """
    n, h, w = images.shape[:3]
    digest = hashlib.sha256()
    digest.update(str((n, h, w, 3)).encode())
    if images.ndim == 4 and images.shape[3] == 3:
        digest.update(images.data)
        return digest.digest()
    step = max(1, (64 << 20) // max(1, h * w * 3))
    for start in range(0, n, step):
        chunk = images[start : start + step].reshape(-1, h, w, 1)
        digest.update(np.repeat(chunk, 3, axis=3).data)
    return digest.digest()


def _check_npz_shapes(members: dict[str, _NpyMember], path: Path, max_pixels: int) -> int:
    """Check images, labels and slice columns on their declared shapes; return N."""
    images = members["images"]
    shape = images.shape
    if images.dtype != np.uint8:
        raise DataError(f"{path}: images have dtype {images.dtype}; expected uint8 (0-255) N x H x W x 3 RGB")
    if not (len(shape) == 3 or (len(shape) == 4 and shape[3] in (1, 3))):
        hint = " (looks channels-first: transpose to N x H x W x 3)" if len(shape) == 4 and shape[1] in (1, 3) else ""
        raise DataError(
            f"{path}: images have shape {shape}; expected N x H x W x 3 RGB or N x H x W grayscale{hint}"
        )
    n = shape[0]
    if n == 0:
        raise DataError(f"{path}: images is empty (N = 0): the dataset is empty")
    if n > MAX_NPZ_SAMPLES:
        raise DataError(
            f"{path}: images declares {n} samples, more than the {MAX_NPZ_SAMPLES} an .npz may hold; "
            "use an image folder or a manifest"
        )
    check_image_pixels(shape[2], shape[1], max_pixels, f"{path} (array 'images', {' x '.join(map(str, shape))})")
    labels = members["labels"]
    if len(labels.shape) != 1 or labels.shape[0] != n:
        raise DataError(f"{path}: labels has shape {labels.shape}; expected ({n},) to match images")
    names = members.get("class_names")
    if names is not None and math.prod(names.shape) > MAX_NPZ_CLASS_NAMES:
        raise DataError(
            f"{path}: class_names declares {math.prod(names.shape)} entries, more than {MAX_NPZ_CLASS_NAMES}"
        )
    for key, member in members.items():
        if key in ("images", "labels", "class_names"):
            continue
        if len(member.shape) != 1 or member.shape[0] != n:
            raise DataError(
                f"{path}: array {key!r} has shape {member.shape}; slice columns must have shape ({n},)"
            )
    return n


def _npz_str(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)
