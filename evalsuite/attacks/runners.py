"""Attack runners: torchattacks attacks configured as their papers run them, seeded and quiet.

Every attack here is a torchattacks class; evalsuite only chooses its parameters, seeds it and
checks its output. Parameters follow the original papers and the AutoAttack "standard"
version, not torchattacks' reduced defaults (``APGD``/``APGDT``/``FAB`` default to 10 steps
there, and ``APGDT``/``FAB`` would target every other class):

============  ======================================================  ==============================
name          torchattacks call                                       per-sample cost (upper bound)
============  ======================================================  ==============================
fgsm          L-inf ``FGSM(eps)``; L2: ``PGDL2(alpha=eps, steps=1,     1 fwd+bwd
              random_start=False)`` (the fast gradient method)
pgd           ``PGD`` / ``PGDL2`` (random start, ``steps`` = 10,       steps fwd+bwd
              step ``2.5 eps / steps`` as Madry et al.)
apgd-ce       ``APGD(loss='ce', steps=100, n_restarts=1, rho=.75)``    101 fwd+bwd + 2 fwd
apgd-t        ``APGDT(steps=100, n_restarts=1)``, 9 target classes     9 x (101 fwd+bwd + 1 fwd) + 1 fwd
fab-t         ``FAB(multi_targeted=True, steps=100)``, 9 targets       9 x 100 fwd+bwd + 9 x 202 fwd
square        ``Square(n_queries=5000, p_init=.8, loss='margin')``     5000 fwd (queries only)
cw-l2         ``CW(c=1, kappa=0, steps=100, lr=.01)``; minimum-norm,   steps fwd+bwd
              so its output is projected onto the L2 ball
============  ======================================================  ==============================

``autoattack`` names the AutoAttack standard ensemble: apgd-ce, apgd-t, fab-t, square, each run
on the samples the previous ones did not break (torchattacks' own ``AutoAttack`` wrapper builds
its APGD/APGDT/FAB with 10 steps and APGDT/FAB with ``n_classes - 1`` targets, hence this
composition of its components with the original parameters).

Seeding: :func:`run_attack` seeds torch's global generator with the given seed inside
``torch.random.fork_rng`` (random starts of FGSM/PGD/CW draw from it) and passes the same seed
to attacks that take one (APGD, APGDT, FAB and Square re-seed the global generator
themselves); the caller's random state is restored afterwards. torchattacks prints progress
and mode changes to stdout; that text is captured and sent to the debug log.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from typing import Any

from evalsuite.attacks.threat import TORCHATTACKS_NORM
from evalsuite.errors import UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttackInfo:
    """What an attack is and what it needs."""

    name: str
    norms: tuple[str, ...]
    whitebox: bool
    description: str


ATTACKS: dict[str, AttackInfo] = {
    "fgsm": AttackInfo("fgsm", ("linf", "l2"), True,
                       "one signed-gradient step (FGSM; the L2 form is the fast gradient method) - torchattacks.FGSM/PGDL2"),
    "pgd": AttackInfo("pgd", ("linf", "l2"), True,
                      "projected gradient descent, random start, `steps` steps of 2.5*eps/steps - torchattacks.PGD/PGDL2"),
    "apgd-ce": AttackInfo("apgd-ce", ("linf", "l2"), True,
                          "auto-PGD on cross-entropy, 100 iterations (Croce & Hein 2020) - torchattacks.APGD"),
    "apgd-t": AttackInfo("apgd-t", ("linf", "l2"), True,
                         "targeted auto-PGD on the DLR loss, 9 target classes x 100 iterations - torchattacks.APGDT"),
    "fab-t": AttackInfo("fab-t", ("linf", "l2"), True,
                        "targeted fast adaptive boundary attack, 9 targets x 100 iterations - torchattacks.FAB"),
    "square": AttackInfo("square", ("linf", "l2"), False,
                         "Square attack, query-only (no gradients), 5000 queries - torchattacks.Square"),
    "cw-l2": AttackInfo("cw-l2", ("l2",), True,
                        "Carlini-Wagner L2 (c=1, 100 Adam steps), projected onto the L2 ball - torchattacks.CW"),
}

ALIASES: dict[str, tuple[str, ...]] = {
    "autoattack": ("apgd-ce", "apgd-t", "fab-t", "square"),
}

TIERS: dict[str, tuple[str, ...]] = {
    "smoke": ("fgsm", "pgd"),
    "standard": ("apgd-ce", "apgd-t"),
    "full": ALIASES["autoattack"],
}

TIER_DESCRIPTIONS = {
    "smoke": "FGSM + PGD-10 on a seeded stratified subset (CI-sized); Square check at the largest eps",
    "standard": "APGD-CE + APGD-T with the paper's 100 iterations and 9 targets; Square check at the largest eps",
    "full": "AutoAttack standard: APGD-CE, APGD-T, FAB-T (100 iterations, 9 targets), Square (5000 queries)",
}


@dataclass(frozen=True)
class AttackSettings:
    """Attack parameters (defaults: the original papers / AutoAttack standard)."""

    pgd_steps: int = 10
    pgd_step_factor: float = 2.5  # PGD step size = factor * eps / steps
    apgd_steps: int = 100
    restarts: int = 1
    targets: int = 9
    fab_steps: int = 100
    square_queries: int = 5000
    square_p_init: float = 0.8
    cw_steps: int = 100
    cw_c: float = 1.0
    cw_lr: float = 0.01


def expand_attacks(names: Any) -> list[str]:
    """Validate a list of attack names (aliases expanded, order kept, duplicates removed)."""
    from evalsuite.registry import did_you_mean

    if isinstance(names, str):
        names = [names]
    if not isinstance(names, (list, tuple)) or not names:
        raise UsageError("attacks must be a non-empty list of attack names, e.g. ['pgd', 'apgd-ce']")
    out: list[str] = []
    valid = sorted(ATTACKS) + sorted(ALIASES)
    for raw in names:
        name = str(raw).strip().lower()
        if name in ALIASES:
            expanded: tuple[str, ...] = ALIASES[name]
        elif name in ATTACKS:
            expanded = (name,)
        else:
            raise UsageError(f"unknown attack {raw!r}{did_you_mean(name, valid)}; valid: {', '.join(valid)}")
        out.extend(a for a in expanded if a not in out)
    return out


def n_targets(settings: AttackSettings, n_classes: int) -> int:
    """Target classes of the targeted attacks: the settings' count, at most n_classes - 1."""
    return max(1, min(int(settings.targets), int(n_classes) - 1))


def supported(name: str, norm: str, n_classes: int) -> tuple[bool, str]:
    """Whether ``name`` can run for ``norm`` on a model with ``n_classes`` outputs (and why not)."""
    info = ATTACKS[name]
    if norm not in info.norms:
        return False, f"{name} has no {norm} form"
    if name == "apgd-t" and n_classes < 4:
        return False, "apgd-t's targeted DLR loss needs at least 4 classes"
    if name in ("apgd-t", "fab-t") and n_classes < 2:
        return False, f"{name} needs at least 2 classes"
    return True, ""


def passes_per_sample(name: str, settings: AttackSettings, n_classes: int) -> tuple[int, int]:
    """Upper bound of (forward+backward, forward-only) passes per attacked sample."""
    t = n_targets(settings, n_classes)
    r = settings.restarts
    if name == "fgsm":
        return 1, 0
    if name == "pgd":
        return settings.pgd_steps, 0
    if name == "apgd-ce":
        return r * (settings.apgd_steps + 1), 1 + r
    if name == "apgd-t":
        return t * r * (settings.apgd_steps + 1), 1 + t * r
    if name == "fab-t":
        return t * r * settings.fab_steps, t * r * (2 * settings.fab_steps + 2)
    if name == "square":
        return 0, settings.square_queries + 2
    if name == "cw-l2":
        return settings.cw_steps, 0
    raise ValueError(f"unknown attack {name!r}")


def build_attack(name: str, module: Any, *, norm: str, eps: float, n_classes: int, seed: int,
                 settings: AttackSettings) -> Any:
    """The configured torchattacks object for ``name`` (see the module docstring)."""
    import torchattacks

    tnorm = TORCHATTACKS_NORM[norm]
    s = settings
    if name == "fgsm":
        if norm == "linf":
            return torchattacks.FGSM(module, eps=eps)
        return torchattacks.PGDL2(module, eps=eps, alpha=eps, steps=1, random_start=False)
    if name == "pgd":
        alpha = s.pgd_step_factor * eps / max(1, s.pgd_steps)
        if norm == "linf":
            return torchattacks.PGD(module, eps=eps, alpha=alpha, steps=s.pgd_steps, random_start=True)
        return torchattacks.PGDL2(module, eps=eps, alpha=alpha, steps=s.pgd_steps, random_start=True)
    if name == "apgd-ce":
        return torchattacks.APGD(module, norm=tnorm, eps=eps, steps=s.apgd_steps, n_restarts=s.restarts,
                                 seed=seed, loss="ce", eot_iter=1, rho=0.75)
    if name == "apgd-t":
        atk = torchattacks.APGDT(module, norm=tnorm, eps=eps, steps=s.apgd_steps, n_restarts=s.restarts,
                                 seed=seed, eot_iter=1, rho=0.75, n_classes=n_classes)
        atk.n_target_classes = n_targets(s, n_classes)
        return atk
    if name == "fab-t":
        atk = torchattacks.FAB(module, norm=tnorm, eps=eps, steps=s.fab_steps, n_restarts=s.restarts,
                               seed=seed, multi_targeted=True, n_classes=n_classes)
        atk.n_target_classes = n_targets(s, n_classes)
        return atk
    if name == "square":
        return torchattacks.Square(module, norm=tnorm, eps=eps, n_queries=s.square_queries, n_restarts=1,
                                   p_init=s.square_p_init, loss="margin", resc_schedule=True, seed=seed)
    if name == "cw-l2":
        return torchattacks.CW(module, c=s.cw_c, kappa=0, steps=s.cw_steps, lr=s.cw_lr)
    raise ValueError(f"unknown attack {name!r}")


def run_attack(name: str, module: Any, x: Any, y: Any, *, norm: str, eps: float, n_classes: int, seed: int,
               settings: AttackSettings | None = None) -> Any:
    """Adversarial examples of ``name`` for ``x`` (float NCHW in [0, 1]) with labels ``y``.

    Deterministic given ``seed`` and the batch; leaves the caller's random state untouched. The
    output is exactly torchattacks' (budget checks and CW-L2's projection are the caller's job).
    """
    import torch

    settings = settings or AttackSettings()
    seed = int(seed) % (2**63)
    devices = [x.device] if x.is_cuda else []
    buf = io.StringIO()
    with torch.random.fork_rng(devices=devices), contextlib.redirect_stdout(buf):
        torch.manual_seed(seed)
        atk = build_attack(name, module, norm=norm, eps=eps, n_classes=n_classes, seed=seed, settings=settings)
        atk.set_device(x.device)
        adv = atk(x, y)
    text = buf.getvalue().strip()
    if text:
        log.debug("%s: %s", name, text[-500:])
    return adv.detach()
