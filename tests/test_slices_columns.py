"""Slice columns (categorical, numeric binning, missing values, intersections) and derived image slices."""

from __future__ import annotations

import numpy as np
import pytest

from evalsuite.slices.columns import MISSING, OTHER, intersect, prepare_column


def test_categorical_groups_sorted_by_name():
    col = prepare_column("region", np.array(["north", "south", "north", "east"], dtype=object))
    assert col.kind == "categorical" and col.edges is None
    assert col.groups == ["east", "north", "south"]
    assert [col.groups[c] for c in col.codes] == ["north", "south", "north", "east"]


def test_numeric_column_quantile_bins_with_recorded_edges():
    rng = np.random.default_rng(0)
    values = rng.normal(size=1001)
    col = prepare_column("score", values, numeric_bins=4)
    edges = np.quantile(values, [0, 0.25, 0.5, 0.75, 1.0])
    assert col.kind == "numeric"
    np.testing.assert_allclose(col.edges, edges)
    assert len(col.groups) == 4
    assert col.groups[0].startswith("[") and col.groups[1].startswith("(")
    # hand assignment: first bin closed on both sides, then (lo, hi]
    expected = np.where(values <= edges[1], 0, np.where(values <= edges[2], 1, np.where(values <= edges[3], 2, 3)))
    np.testing.assert_array_equal(col.codes, expected)
    counts = np.bincount(col.codes)
    assert counts.min() >= 250 and counts.max() <= 251
    # the exact edge values land in the lower bin
    col2 = prepare_column("x", np.array([1.0, 2, 3, 4, 5, 6, 7, 8, 9]), numeric_bins=2)
    assert col2.edges == [1.0, 5.0, 9.0]
    assert col2.groups == ["[1, 5]", "(5, 9]"]
    assert list(col2.codes) == [0, 0, 0, 0, 0, 1, 1, 1, 1]


def test_tied_quantiles_collapse_and_few_values_are_categories():
    values = np.array([0.0] * 60 + [1.0, 2.0, 3.0, 4.0, 5.0] * 8)
    col = prepare_column("ties", values, numeric_bins=4)
    assert len(col.groups) < 4 and any("tied quantiles" in n for n in col.notes)
    few = prepare_column("band", np.array([1, 2, 3, 2, 1]), numeric_bins=4)
    assert few.kind == "categorical" and few.groups == ["1", "2", "3"]
    flags = prepare_column("flag", np.array([True, False, True]))
    assert flags.groups == ["False", "True"]


def test_missing_values_form_their_own_group():
    import pandas as pd

    raw = np.array(["a", None, "b", float("nan"), "", "  ", pd.NA, "a"], dtype=object)
    col = prepare_column("c", raw)
    assert col.groups == ["a", "b", MISSING]
    assert [col.groups[k] for k in col.codes] == ["a", MISSING, "b", MISSING, MISSING, MISSING, MISSING, "a"]
    num = prepare_column("n", np.array([0.1, np.nan, 0.5, 0.9, np.inf, 0.3, 0.7, 0.2]), numeric_bins=2)
    assert num.groups[-1] == MISSING
    assert [num.groups[k] for k in num.codes].count(MISSING) == 2
    np.testing.assert_allclose(num.edges, np.quantile([0.1, 0.5, 0.9, 0.3, 0.7, 0.2], [0, 0.5, 1]))
    objnum = prepare_column("o", np.array([1.5, None, 2.5, 3.5, 4.5, 5.5], dtype=object), numeric_bins=2)
    assert objnum.kind == "numeric" and objnum.groups[-1] == MISSING and objnum.codes[1] == len(objnum.groups) - 1


def test_too_many_categories_pool_into_other():
    values = np.array([f"v{i}" for i in range(10)] * 2 + ["v0"] * 5, dtype=object)
    col = prepare_column("id", values, max_groups=4)
    assert col.groups[-1] == OTHER and len(col.groups) == 4
    assert col.groups[:3] == ["v0", "v1", "v2"]  # most frequent first, ties by name
    assert sum(1 for c in col.codes if col.groups[c] == OTHER) == 14  # v3..v9, twice each


def test_intersection_of_two_columns():
    a = prepare_column("a", np.array(["x", "x", "y", "y", "y"], dtype=object))
    b = prepare_column("b", np.array(["p", "q", "p", "p", None], dtype=object))
    ab = intersect(a, b)
    assert ab.name == "a&b" and ab.kind == "intersection"
    assert [ab.groups[c] for c in ab.codes] == ["x & p", "x & q", "y & p", "y & p", f"y & {MISSING}"]
    assert len(ab.groups) == 4  # only combinations that occur


def test_bad_column_inputs():
    from evalsuite.errors import DataError, UsageError

    with pytest.raises(DataError, match="one value per sample"):
        prepare_column("m", np.zeros((3, 2)))
    with pytest.raises(UsageError, match="numeric_bins"):
        prepare_column("m", np.arange(10.0), numeric_bins=1)


# ------------------------------------------------------------------ derived image properties


def test_laplacian_variance_matches_opencv():
    import cv2

    from evalsuite.slices.derived import laplacian_variance, luma

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(23, 31, 3), dtype=np.uint8)
    y = luma(img)
    assert laplacian_variance(y) == pytest.approx(cv2.Laplacian(y, cv2.CV_64F).var(), rel=1e-12)
    gray = np.asarray(img.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
    np.testing.assert_allclose(y, gray)


def test_brightness_contrast_colourfulness_by_hand():
    from evalsuite.slices.derived import image_properties

    grey = np.full((4, 6, 3), 128, dtype=np.uint8)
    p = image_properties(grey)
    assert p["brightness"] == pytest.approx(128 / 255)
    assert p["contrast"] == 0.0 and p["colourfulness"] == 0.0 and p["sharpness"] == 0.0
    assert (p["height"], p["width"]) == (4, 6)
    red = np.zeros((2, 2, 3), dtype=np.uint8)
    red[..., 0] = 255
    # rg = 255, yb = 127.5 everywhere: sd 0, means 255 and 127.5
    assert image_properties(red)["colourfulness"] == pytest.approx(0.3 * np.hypot(255, 127.5))
    half = np.zeros((2, 2, 3), dtype=np.uint8)
    half[0] = 255
    assert image_properties(half)["contrast"] == pytest.approx(0.5)


def test_resolution_and_aspect_buckets():
    from evalsuite.slices.derived import aspect_bucket, resolution_bucket

    h = np.array([32.0, 64, 65, 480, 1080, np.nan])
    w = np.array([32.0, 128, 65, 640, 1920, 10])
    assert list(resolution_bucket(h, w)) == ["<=64 px", "<=64 px", "65-128 px", "257-512 px", ">1024 px", None]
    assert list(aspect_bucket(h, w)) == ["square", "wide", "square", "landscape", "wide", None]
    assert list(aspect_bucket(np.array([100.0]), np.array([80.0]))) == ["portrait"]


def test_derived_columns_stream_native_images_and_mark_failures():
    from evalsuite.errors import DataError
    from evalsuite.slices.derived import compute_properties, derived_columns

    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, size=(20 + i % 3, 30, 3), dtype=np.uint8) for i in range(40)]

    def read(i: int) -> np.ndarray:
        if i == 7:
            raise DataError("cannot decode sample 7")
        return images[i]

    props = compute_properties(read, 40, workers=2)
    assert np.isnan(props["brightness"][7]) and np.isfinite(props["brightness"][8])
    assert props["height"][1] == 21
    cols = {c.name: c for c in derived_columns(props, ["brightness", "resolution", "aspect"], numeric_bins=4)}
    b = cols["brightness"]
    assert b.source == "derived" and b.kind == "numeric" and b.groups[-1] == MISSING
    assert b.groups[b.codes[7]] == MISSING
    assert cols["resolution"].groups == ["<=64 px", MISSING]
    assert cols["aspect"].groups[0] == "landscape"


def test_unknown_derived_name_suggests():
    from evalsuite.errors import UsageError
    from evalsuite.slices.derived import check_names

    with pytest.raises(UsageError, match="did you mean 'brightness'"):
        check_names(["brightnes"])


def test_list_entries_cover_every_derived_slice():
    from evalsuite.slices import list_entries
    from evalsuite.slices.derived import DERIVED

    names = [n for n, _ in list_entries()]
    assert all(d in names for d in DERIVED)
    assert "accuracy" in names and "equalized_odds_difference" in names
    assert all(desc for _, desc in list_entries())
