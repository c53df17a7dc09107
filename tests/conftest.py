"""Shared fixtures: digits data, a small trained CNN and its ONNX export (all made on the fly)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("CI", "1")  # no progress bars in test output


@pytest.fixture(scope="session")
def digits_data():
    """(images uint8 N x 32 x 32 x 3, labels, columns, splits) of builtin:digits."""
    from evalsuite.data.builtin import digits_arrays

    return digits_arrays()


@pytest.fixture(scope="session")
def digits_model(digits_data):
    """A DigitsCNN (PixelSpaceModel: takes [0,1] RGB) trained on the train split (eval, CPU, ~95% test acc)."""
    import torch

    from evalsuite.demo_model import train_digits_cnn

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    images, labels, _, splits = digits_data
    tr = splits["train"]
    return train_digits_cnn(images[tr], labels[tr], epochs=6, seed=0)


@pytest.fixture(scope="session")
def digits_onnx(digits_model, tmp_path_factory):
    """Path of ``digits_model.network`` exported to ONNX (expects normalised input; mean/std in metadata)."""
    from evalsuite.demo_model import DIGITS_MEAN, DIGITS_STD
    from evalsuite.models.export import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    export_onnx(
        digits_model.network,
        path,
        input_size=(32, 32),
        mean=DIGITS_MEAN,
        std=DIGITS_STD,
        class_names=[str(i) for i in range(10)],
    )
    return path


@pytest.fixture(scope="session")
def quick_run(digits_onnx, tmp_path_factory):
    """A finished ``--suite quick`` run on 60 builtin digits, shared read-only: tests that change
    its files work on a copy."""
    from evalsuite.cli import main

    out = tmp_path_factory.mktemp("quick") / "run"
    assert main(["run", str(digits_onnx), "--suite", "quick", "--data", "builtin:digits", "--limit", "60",
                 "--out", str(out)]) == 0
    return out


@pytest.fixture()
def rng():
    return np.random.default_rng(0)
