"""Progress bars that stay out of logs: tqdm on an interactive terminal, nothing otherwise.

Bars are off when stderr is not a TTY or when the ``CI`` environment variable is set, so CI logs
and captured test output stay readable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_enabled() -> bool:
    """True when a progress bar would be seen by a person."""
    if os.environ.get("CI"):
        return False
    if os.environ.get("EVALSUITE_NO_PROGRESS"):
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar when :func:`progress_enabled`, else iterate it unchanged.

    The bar itself is returned (it has ``set_description``, which callers use to name the
    current step); without a bar, a plain iterator.
    """
    if not progress_enabled():
        return iter(iterable)
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
