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
- multi-frame files (TIFF pages) use the first frame.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.data.base import Dataset
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


def open_dataset(spec: str, *, skip_bad_images: bool = False) -> Dataset:
    """Open whatever ``--data`` names and return a :class:`Dataset`.

    ``skip_bad_images`` keeps the table of samples the same but tolerates files that cannot be
    read while fingerprinting (a folder's unreadable file, a manifest row whose file is
    missing): they enter the fingerprint as "unreadable" and the loader later reports them in
    ``Batch.bad`` (:func:`evalsuite.data.loader.iter_batches` with ``skip_bad=True``). Without
    it such a file is a :class:`DataError` naming it.

    Raises :class:`DataError` for a missing path ("no such file or directory: X"), an unknown
    format (listing the supported forms), an empty dataset, a malformed manifest or npz.
    """
    spec = str(spec)
    if spec.startswith("builtin:"):
        return _open_builtin(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"no such file or directory: {spec}")
    if path.is_dir():
        return read_image_folder(path, name=spec, skip_bad_images=skip_bad_images)
    suffix = path.suffix.lower()
    if suffix in MANIFEST_EXTENSIONS:
        return read_manifest(path, name=spec, skip_bad_images=skip_bad_images)
    if suffix == ".npz":
        return read_npz(path, name=spec)
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


def decode_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode one image file to ``H x W x 3`` uint8 RGB (rules in the module docstring).

    Raises :class:`DataError` naming the file when it cannot be read or decoded.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb_array(img, path)
    except DataError:
        raise
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
    root: str | os.PathLike[str], *, name: str | None = None, skip_bad_images: bool = False
) -> Dataset:
    """A folder with one sub-folder per class; the folder name is the label.

    ``class_names`` are the sorted names of the (non-hidden) sub-folders; ids are image paths
    relative to ``root`` in POSIX form; images are found recursively inside each class folder;
    files without an image extension ({exts}) and hidden files/folders are ignored. Symbolic
    links are followed (each real folder is visited once).
    """
    root = Path(root)
    classes = sorted(
        e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")
    )
    rel_paths: list[str] = []
    labels: list[str] = []
    empty: list[str] = []
    for cls in classes:
        found: list[str] = []
        visited: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(root / cls, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in visited:  # a symlink cycle or a second link to the same folder
                dirnames[:] = []
                continue
            visited.add(real)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fn in filenames:
                if fn.startswith(".") or not _is_image(fn):
                    continue
                found.append(Path(os.path.relpath(os.path.join(dirpath, fn), root)).as_posix())
        if not found:
            empty.append(cls)
        found.sort()
        rel_paths.extend(found)
        labels.extend([cls] * len(found))
    if not rel_paths:
        raise DataError(
            f"no images found in {name or root} (expected {name or root}/<class>/<image> with one of "
            f"{', '.join(IMAGE_EXTENSIONS)})"
        )
    if empty:
        log.warning("class folder(s) without images in %s: %s", root, ", ".join(empty))
    ids = np.array(rel_paths, dtype=object)
    label_arr = np.array(labels, dtype=object)
    abs_paths = [str(root / p) for p in rel_paths]
    fp = fingerprint("folder", ids, label_arr, {}, _file_digests(abs_paths, skip_bad_images))
    return Dataset(
        name=name or str(root),
        ids=ids,
        labels=label_arr,
        columns={},
        fingerprint=fp,
        loader=_path_loader(abs_paths),
        class_names=classes,
    )


read_image_folder.__doc__ = (read_image_folder.__doc__ or "").replace("{exts}", ", ".join(IMAGE_EXTENSIONS))


def _path_loader(paths: list[str]) -> Callable[[int], np.ndarray]:
    def load(i: int) -> np.ndarray:
        return decode_image(paths[i])

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
        frac = np.flatnonzero(values != np.round(values))
        if len(frac):
            raise DataError(
                f"{manifest}: row {int(frac[0]) + 1} has a non-integer numeric label {values[frac[0]]!r}"
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
    manifest: str | os.PathLike[str], *, name: str | None = None, skip_bad_images: bool = False
) -> Dataset:
    """A CSV/Parquet table with columns ``path`` and ``label``; every other column is a slice column.

    Paths are relative to the manifest's folder (absolute paths are allowed when they lie inside
    it). A path that resolves -- after ``..`` and symbolic links -- outside the manifest's folder
    is refused, as are paths listed twice and (unless ``skip_bad_images``) missing files; errors
    name the row (1-based, header not counted). Ids are the paths relative to the manifest's
    folder in POSIX form. In a CSV, labels are read as text and become integers only when every
    label is a plain integer (``"3"``, not ``"03"``), so no label is changed by parsing.
    """
    manifest = Path(manifest)
    table = _read_table(manifest)
    missing_cols = [c for c in ("path", "label") if c not in table.columns]
    if missing_cols:
        have = ", ".join(map(str, table.columns)) or "(none)"
        raise DataError(f"manifest {manifest} lacks column(s) {', '.join(missing_cols)}; found: {have}")
    if len(table) == 0:
        raise DataError(f"manifest {manifest} has no rows: the dataset is empty")
    base = os.path.realpath(manifest.parent)
    rel_paths: list[str] = []
    abs_paths: list[str] = []
    seen: dict[str, int] = {}
    for row, raw in enumerate(table["path"].tolist(), start=1):
        if raw is None or (isinstance(raw, float) and np.isnan(raw)) or str(raw).strip() == "":
            raise DataError(f"{manifest}: row {row} has an empty path")
        given = str(raw)
        joined = given if os.path.isabs(given) else os.path.join(base, given)
        real = os.path.realpath(joined)
        if os.path.commonpath([base, real]) != base or real == base:
            raise DataError(f"{manifest}: row {row} path {given!r} lies outside the manifest's folder {base}")
        if not os.path.isfile(real) and not skip_bad_images:
            raise DataError(f"{manifest}: row {row} path {given!r}: no such file")
        rel = Path(os.path.relpath(os.path.normpath(joined), base)).as_posix()
        if os.path.isabs(given) or rel.startswith("../"):
            rel = Path(os.path.relpath(real, base)).as_posix()
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
        loader=_path_loader(abs_paths),
        class_names=None,
    )


# --------------------------------------------------------------------------------------------
# NPZ
# --------------------------------------------------------------------------------------------


def read_npz(path: str | os.PathLike[str], *, name: str | None = None) -> Dataset:
    """An ``.npz`` with ``images`` and ``labels``; other arrays of length N are slice columns.

    ``images`` must be uint8 ``N x H x W x 3`` RGB; ``N x H x W`` (and ``N x H x W x 1``)
    grayscale is accepted and repeated into three channels. An optional ``class_names`` array
    (the label vocabulary, any length) becomes ``Dataset.class_names``. Object arrays are refused
    (loading them needs pickle): store strings as fixed-width unicode (``np.array([...], dtype=str)``).
    Ids are ``npz/<index>``.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataError(
                f"{path}: holds object arrays (needs pickle, refused); store strings as fixed-width unicode"
            ) from None
        raise DataError(f"cannot read npz {path}: {' '.join(str(exc).split())}") from None
    except Exception as exc:
        raise DataError(f"cannot read npz {path}: {' '.join(str(exc).split()) or type(exc).__name__}") from None
    missing = [k for k in ("images", "labels") if k not in arrays]
    if missing:
        raise DataError(f"{path} lacks array(s) {', '.join(missing)}; found: {', '.join(sorted(arrays)) or '(none)'}")
    images = arrays.pop("images")
    raw_labels = arrays.pop("labels")
    class_names = arrays.pop("class_names", None)
    images = _check_npz_images(images, path)
    n = len(images)
    if n == 0:
        raise DataError(f"{path}: images is empty (N = 0): the dataset is empty")
    if raw_labels.ndim != 1 or len(raw_labels) != n:
        raise DataError(f"{path}: labels has shape {tuple(raw_labels.shape)}; expected ({n},) to match images")
    if raw_labels.dtype.kind in "iu":
        labels = raw_labels.astype(np.int64)
    elif raw_labels.dtype.kind in "US":
        labels = np.array([_npz_str(v) for v in raw_labels], dtype=object)
    else:
        raise DataError(f"{path}: labels have dtype {raw_labels.dtype}; expected integers or strings")
    columns: dict[str, np.ndarray] = {}
    for key, arr in arrays.items():
        if arr.ndim != 1 or len(arr) != n:
            raise DataError(
                f"{path}: array {key!r} has shape {tuple(arr.shape)}; slice columns must have shape ({n},)"
            )
        columns[key] = np.array([_npz_str(v) for v in arr], dtype=object) if arr.dtype.kind in "US" else arr
    ids = np.array([f"npz/{i}" for i in range(n)], dtype=object)
    h = hashlib.sha256()
    h.update(str(images.shape).encode())
    h.update(np.ascontiguousarray(images).data)
    names = None if class_names is None else [_npz_str(v) for v in np.ravel(class_names)]
    fp = fingerprint("npz", ids, labels, columns, None, extra=h.digest() + repr(names).encode())
    images.setflags(write=False)

    def load(i: int) -> np.ndarray:
        return images[i]

    return Dataset(
        name=name or str(path),
        ids=ids,
        labels=labels,
        columns=columns,
        fingerprint=fp,
        loader=load,
        class_names=names,
    )


def _npz_str(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def _check_npz_images(images: np.ndarray, path: Path) -> np.ndarray:
    shape = tuple(images.shape)
    if images.dtype != np.uint8:
        raise DataError(
            f"{path}: images have dtype {images.dtype}; expected uint8 (0-255) N x H x W x 3 RGB"
        )
    if images.ndim == 3:
        return np.ascontiguousarray(np.repeat(images[..., None], 3, axis=3))
    if images.ndim == 4 and shape[3] == 1:
        return np.ascontiguousarray(np.repeat(images, 3, axis=3))
    if images.ndim == 4 and shape[3] == 3:
        return np.ascontiguousarray(images)
    hint = ""
    if images.ndim == 4 and shape[1] in (1, 3):
        hint = " (looks channels-first: transpose to N x H x W x 3)"
    raise DataError(
        f"{path}: images have shape {shape}; expected N x H x W x 3 RGB or N x H x W grayscale{hint}"
    )
