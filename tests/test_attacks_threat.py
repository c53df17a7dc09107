"""Threat models: epsilon parsing and safe keys, budget checks, projection."""

from __future__ import annotations

import math

import pytest
import torch

from evalsuite.attacks.threat import (
    L2_ATOL,
    L2_RTOL,
    LINF_ATOL,
    budget_status,
    parse_eps,
    parse_eps_list,
    project,
)
from evalsuite.errors import UsageError


@pytest.mark.parametrize(
    "raw,norm,value,label,key",
    [
        ("8/255", "linf", 8 / 255, "8/255", "8_255"),
        (" 1 / 255 ", "linf", 1 / 255, "1/255", "1_255"),
        (0.5, "l2", 0.5, "0.5", "0p5"),
        ("0.25", "l2", 0.25, "0.25", "0p25"),
        (1, "l2", 1.0, "1", "1"),
        (2.0, "l2", 2.0, "2", "2"),
        (1e-5, "l2", 1e-5, "0.00001", "0p00001"),
        ("0.5/255", "linf", 0.5 / 255, "0.5/255", "0p5_255"),
    ],
)
def test_parse_eps_values_labels_and_keys(raw, norm, value, label, key):
    e = parse_eps(raw, norm)
    assert math.isclose(e.value, value, rel_tol=0, abs_tol=1e-15)
    assert e.label == label and e.key == key
    assert "." not in e.key and "/" not in e.key


@pytest.mark.parametrize("raw", ["abc", "-1/255", 0, -0.1, "1/0", True, None, "1e-3", float("nan"), [1]])
def test_parse_eps_rejects_bad_values(raw):
    with pytest.raises(UsageError):
        parse_eps(raw, "l2")


def test_linf_eps_above_one_rejected_and_defaults():
    with pytest.raises(UsageError, match="exceeds 1"):
        parse_eps(1.5, "linf")
    assert [e.key for e in parse_eps_list(None, "linf")] == ["1_255", "2_255", "4_255", "8_255"]
    assert [e.key for e in parse_eps_list(None, "l2")] == ["0p25", "0p5"]
    assert [e.label for e in parse_eps_list(["8/255", "2/255"], "linf")] == ["2/255", "8/255"]
    with pytest.raises(UsageError, match="twice"):
        parse_eps_list(["8/255", 8 / 255], "linf")
    with pytest.raises(UsageError):
        parse_eps_list([], "linf")


def test_budget_status_hand_cases():
    x = torch.full((5, 1, 2, 2), 0.5)
    eps = 0.1
    adv = x.clone()
    adv[0, 0, 0, 0] += eps  # exactly on the boundary: valid
    adv[1, 0, 0, 0] += eps + 10 * LINF_ATOL  # over budget
    adv[2, 0, 0, 0] = 1.2  # out of range (and over budget)
    adv[3, 0, 0, 0] = float("nan")
    adv[4] = x[4] - eps  # every pixel at -eps: valid
    s = budget_status(x, adv, "linf", eps)
    assert s["valid"].tolist() == [True, False, False, False, True]
    assert s["in_budget"].tolist() == [True, False, False, False, True]
    assert s["in_range"].tolist() == [True, True, False, False, True]
    assert s["finite"].tolist() == [True, True, True, False, True]
    assert s["linf"][0].item() == pytest.approx(eps, abs=1e-7)
    assert s["l2"][4].item() == pytest.approx(eps * 2, abs=1e-6)  # sqrt(4) * eps


def test_budget_status_l2_tolerance():
    x = torch.zeros(3, 1, 1, 4) + 0.5
    eps = 0.5
    d = torch.tensor([0.3, 0.4, 0.0, 0.0])  # norm 0.5 exactly
    adv = x.clone()
    adv[0, 0, 0] += d
    adv[1, 0, 0] += d * (1 + 10 * L2_RTOL) + L2_ATOL
    adv[2, 0, 0] += d * (1 + 0.1 * L2_RTOL)
    s = budget_status(x, adv, "l2", eps)
    assert s["in_budget"].tolist() == [True, False, True]


def test_project_lands_inside_the_ball_and_box():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 4, 4, generator=g)
    adv = (x + torch.randn(6, 3, 4, 4, generator=g)).clamp(0, 1)
    for norm, eps in (("linf", 0.05), ("l2", 0.3)):
        p = project(x, adv, norm, eps)
        assert budget_status(x, p, norm, eps)["valid"].all()
    inside = x + 0.01
    assert torch.equal(project(x, inside.clamp(0, 1), "linf", 0.05), inside.clamp(0, 1))
