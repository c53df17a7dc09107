"""Limits and containment rules that treat every data file as hostile.

Checked *before* anything is allocated or decoded, so a small file that declares a huge image or
array is a one-line :class:`~evalsuite.errors.DataError` in milliseconds, never an out-of-memory
kill minutes later.

- **Pixels per image** (:data:`DEFAULT_MAX_IMAGE_PIXELS`, ``--max-image-pixels``): 64 million.
  That is above every photo a current camera or phone writes by default (24 MP phones, 48-50 MP
  phone sensors at 8160x6120, 61 MP full-frame bodies) and far above ImageNet-style data (under
  1 MP), yet one decoded RGB copy stays under 200 MB, so the decoding threads together stay within
  a few GB. It is also below Pillow's own warning threshold (about 89.5 MP), whose warning and
  error evalsuite replaces with this check (:func:`check_image_pixels`). Images with no pixels
  (a width or height of 0) are refused too.
- **Bytes an .npz may declare** (:func:`npz_byte_limit`): an ``.npz`` is loaded whole into memory,
  so the sum of its arrays' declared sizes must be at most the smaller of :data:`MAX_NPZ_BYTES`
  (16 GiB: larger datasets belong in a folder or manifest, which are streamed) and half of the
  memory this process may use (physical memory, or ``RLIMIT_AS`` when that is lower), leaving the
  other half to the model and the batches. Each member's declared size must equal the size the
  zip directory lists for it, and a member declaring over 64 MiB may not be compressed more than
  :data:`MAX_NPZ_COMPRESSION_RATIO` to 1 (deflate's ceiling is about 1030:1, reached only by
  constant data; photos compress about 1-3:1): that is how a 9 MB file declaring 8.8 GiB of
  zeros is told from data, on any machine. Genuine data that trips it can be saved with
  ``numpy.savez`` (uncompressed). At most :data:`MAX_NPZ_SAMPLES` samples (ids and string columns
  become Python objects, about 100 bytes each, which the byte limit does not see) and
  :data:`MAX_NPZ_CLASS_NAMES` class names.
- **Data root** (:class:`DataRoot`): one rule for image folders and manifests. A file or folder
  must lie inside the data folder (the folder given to ``--data``, or the manifest's folder) both
  by name -- after collapsing ``..`` -- and by its real path, every symbolic link resolved.
  Symbolic links that stay inside are fine; links whose target lies outside are refused unless
  ``--follow-symlinks``. The flag is about symbolic links only: a manifest path that names a
  file outside the folder (``../x.png``, an absolute path elsewhere) is refused even with it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from evalsuite.errors import DataError, UsageError

DEFAULT_MAX_IMAGE_PIXELS = 64_000_000
"""Largest ``width * height`` of one image, unless ``--max-image-pixels`` says otherwise."""

MAX_NPZ_BYTES = 16 * 2**30
"""Ceiling on the summed declared size of an ``.npz``'s arrays (see :func:`npz_byte_limit`)."""

MAX_NPZ_MEMBERS = 4096
"""Most arrays an ``.npz`` may hold (``images``, ``labels``, ``class_names`` and slice columns)."""

MAX_NPZ_SAMPLES = 10_000_000
"""Most samples (images) an ``.npz`` may hold; larger datasets belong in a folder or manifest."""

MAX_NPZ_CLASS_NAMES = 1_000_000
"""Most entries of an ``.npz``'s ``class_names`` array."""

MAX_NPZ_COMPRESSION_RATIO = 200
"""Largest declared-to-compressed size ratio of a member declaring over :data:`NPZ_RATIO_MIN_BYTES`."""

NPZ_RATIO_MIN_BYTES = 64 * 2**20
"""Members declaring at most this much are never judged by their compression ratio."""

FOLLOW_SYMLINKS_HINT = "pass --follow-symlinks to allow symbolic links out of the data folder"


def check_max_image_pixels(value: object) -> int:
    """``value`` as a positive pixel limit; :class:`UsageError` otherwise (a config file's typo)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"--max-image-pixels must be a positive integer, got {value!r}")
    return value


def megapixels(pixels: int) -> str:
    """``12000x12000`` -> ``"144.0 megapixels"``: how limits and sizes are written in messages."""
    return f"{pixels / 1e6:.1f} megapixels"


def check_image_pixels(width: int, height: int, limit: int, what: object) -> None:
    """Refuse an image of ``width x height`` that has no pixels or more than ``limit`` pixels.

    ``what`` names the file (or array) in the one-line :class:`DataError`. Called on the size an
    image's header declares, before its pixels are decoded or allocated.
    """
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise DataError(f"{what}: image is {width}x{height}: it has no pixels")
    if width * height > limit:
        raise too_many_pixels(what, f"{width}x{height}", width * height, limit)


def too_many_pixels(what: object, size: str, pixels: int, limit: int) -> DataError:
    """The one-line error for an image of ``pixels`` (written ``size``) over ``limit``."""
    return DataError(
        f"{what}: image is {size} ({megapixels(pixels)}), over the limit of {limit} pixels per image "
        f"({megapixels(limit)}); raise it with --max-image-pixels if the image is genuine"
    )


def _usable_memory() -> tuple[int | None, str]:
    """(bytes this process may use, where that number comes from); (None, "") when unknown."""
    best: int | None = None
    origin = ""
    try:
        best = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        origin = "this machine's memory"
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY and soft > 0 and (best is None or soft < best):
            best, origin = int(soft), "this process's address-space limit"
    except (ImportError, ValueError, OSError, AttributeError):
        pass
    return best, origin


def npz_byte_limit() -> tuple[int, str]:
    """(most bytes an ``.npz`` may declare in total, a phrase saying why) -- see the module docstring."""
    memory, origin = _usable_memory()
    if memory is not None and memory // 2 < MAX_NPZ_BYTES:
        return memory // 2, f"half of {origin}"
    return MAX_NPZ_BYTES, "the .npz ceiling"


def human_bytes(n: int) -> str:
    """Bytes in binary units (``8.8 GiB``) for messages."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


# --------------------------------------------------------------------------------------------
# Data root
# --------------------------------------------------------------------------------------------


def is_within(path: str, root: str) -> bool:
    """Whether absolute, normalised ``path`` is ``root`` or lies below it (a plain string rule)."""
    if path == root:
        return True
    prefix = root if root.endswith(os.sep) else root + os.sep
    return path.startswith(prefix)


@dataclass(frozen=True)
class DataRoot:
    """The folder every file of a dataset must lie in (rule in the module docstring).

    Attributes:
        named: the folder as given, made absolute (no links resolved).
        real: its real path (every symbolic link resolved).
        follow_symlinks: whether symbolic links may lead out of the folder.
    """

    named: str
    real: str
    follow_symlinks: bool = False

    @classmethod
    def at(cls, folder: str | os.PathLike[str], *, follow_symlinks: bool = False) -> DataRoot:
        """The data root for ``folder``."""
        return cls(os.path.abspath(folder), os.path.realpath(folder), bool(follow_symlinks))

    def contains_name(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` lies inside by name (``..`` collapsed, links not followed)."""
        lexical = os.path.abspath(path)
        return is_within(lexical, self.real) or is_within(lexical, self.named)

    def check(self, path: str | os.PathLike[str]) -> tuple[str, str | None]:
        """``(real path, None)`` when ``path`` may be read, ``(real path, reason)`` when it may not.

        ``reason`` completes a message that starts by naming the path: ``"lies outside ..."``.
        """
        real = os.path.realpath(path)
        if not self.contains_name(path):
            return real, f"lies outside {self.named}"
        if self.follow_symlinks or is_within(real, self.real):
            return real, None
        return real, f"lies outside {self.real} through a symbolic link (to {real}); {FOLLOW_SYMLINKS_HINT}"
