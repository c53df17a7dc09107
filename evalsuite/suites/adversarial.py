"""The adversarial suite: robust accuracy under L-inf and L2 attacks, with honest aggregation.

For each threat model (norm, epsilon) one condition ``attack/<norm>/<eps key>`` runs every
attack of the chosen tier on a seeded, stratified subset of the data and stores, per sample,
the worst case (the first adversarial example the deployed model itself misclassifies, else
the one with the smallest margin). Robust accuracy at an epsilon is therefore the share of
samples that were classified correctly *and* survived every attack at that epsilon.

White-box attacks run through the model's differentiable torch module; for ONNX files that is
the ONNX gradient bridge (:func:`evalsuite.models.onnx_bridge.bridge_for`), checked against
onnxruntime on real images of the run. The stored predictions always come from
``model.predict`` (onnxruntime for ONNX files) on the adversarial inputs. When no bridge can
be had, the suite runs the query-only Square attack through ``model.predict`` and marks every
number "black-box only" (an upper bound on robustness), with the reason.

With ``surrogate`` (``--attack-surrogate MODEL``) the white-box attacks run on the surrogate's
differentiable module instead (an INT8 model's FP32 source, whose gradients the quantized graph
does not offer) and the deployed model is scored on the pixels they produce: a *transfer*
attack, recorded as mode ``transfer`` with the surrogate's identity in every condition's params,
``adversarial.white_box`` (``attack_mode``, ``surrogate``) and the scorecard. The surrogate must
classify the same classes at the same input geometry; one without a checked differentiable
module is an error (exit 2), never a silent fall-back. Query-only attacks of the tier (Square)
still query the deployed model.

Options (``suites: {adversarial: {...}}`` in a suite preset):

- ``tier``: ``smoke`` (default; FGSM + PGD-10), ``standard`` (APGD-CE + APGD-T, 100 iterations,
  9 targets) or ``full`` (AutoAttack standard: APGD-CE, APGD-T, FAB-T, Square-5000).
- ``n``: size of the seeded stratified subset attacked (default 128; ``all`` for every sample).
- ``seed``: subset and attack seed (default: the run seed).
- ``norms``: ``[linf, l2]`` (default both).
- ``linf_eps``: default ``["1/255", "2/255", "4/255", "8/255"]``; ``l2_eps``: default ``[0.25, 0.5]``.
  Fractions (``"8/255"``) or numbers; the docs define the safe keys used in gate paths.
- ``attacks``: replace the tier's attack list (names from ``evalsuite ls attacks``;
  ``autoattack`` expands to its four attacks).
- ``steps``: PGD steps (default 10); ``apgd_steps``: APGD/APGD-T/FAB iterations (default 100);
  ``targets``: target classes of APGD-T/FAB-T (default 9); ``square_queries``: Square's query
  budget where Square is one of the attacks or the black-box fallback (default 1000 in smoke,
  5000 otherwise).
- ``sanity`` (default true): the gradient-masking checks below. ``blackbox_n`` (default 32)
  samples get the Square check at the largest epsilon of each norm with ``blackbox_queries``
  queries (default 300 in smoke, 5000 otherwise); ``large_eps`` (default 0.5, L-inf) and
  ``sanity_n`` (default 32) set the large-epsilon check.
- ``surrogate`` (model spec, none): craft the attacks on this model (a transfer attack, above).
- ``bridge_tolerance``: refuse the ONNX bridge when its logits differ from onnxruntime's by more
  than this times ``max(1, max |logit|)`` (default 1e-3).
- ``examples``: example pairs shown per norm (default 3); ``amp`` / ``channels_last``: run
  white-box attacks under CUDA float16 autocast / channels_last (default off; the final
  check always uses ``model.predict``).
- ``attack_batch_size`` (default 64): the attacks' own batch size. Attack batches are
  consecutive runs of the subset in dataset order, formed independently of ``--batch-size``,
  because the attacks draw random starts per batch (and Square one square per iteration for
  the whole batch): a result then depends on this option (recorded in every condition's params), never on
  ``--batch-size``. Attack memory grows with it; lower it when a large model's attacks do not
  fit.

Metrics (gate paths): ``adversarial.<norm>.<eps key>.robust_accuracy`` (also
``clean_accuracy``, ``attack_success_rate``, ``mean_linf``, ``mean_l2``, ``violations``),
``adversarial.worst.robust_accuracy``, ``adversarial.clean_accuracy``,
``adversarial.violations`` (FAIL gate at > 0), ``adversarial.white_box`` and
``adversarial.sanity.*`` (WARN gates), ``adversarial.bridge.max_abs_diff``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from evalsuite.conditions import BatchContext, Condition, ConditionIdentity
from evalsuite.errors import ModelError, UsageError
from evalsuite.gates import Gate, Severity
from evalsuite.metric_specs import MetricSpec, specs_under
from evalsuite.predictions import Predictions, PredictionSet
from evalsuite.stats import mean_metric, metric
from evalsuite.suites.base import RunContext, Suite, SuiteOutput

log = logging.getLogger(__name__)

DEFAULT_N = 128
# The attacks' own batch size. 64 is --batch-size's default, so a default run attacks exactly the
# batches it did when attacks followed --batch-size.
DEFAULT_ATTACK_BATCH = 64
DEFAULT_EXAMPLES = 3
GRADIENT_BAD_MAX = 0.10
LARGE_EPS_MAX_ACCURACY = 0.10
SANITY_PGD_STEPS = 20
LONG_RUN_SECONDS = 300.0
MODE_WHITE = "white-box"
MODE_BLACK = "black-box only"
MODE_TRANSFER = "transfer"
#: ``adversarial.white_box``'s ``attack_mode`` for each mode.
ATTACK_MODES = {MODE_WHITE: "white-box", MODE_BLACK: "black-box", MODE_TRANSFER: "transfer"}


@dataclass(eq=False)
class AttackCondition(Condition):
    """One threat model (norm, eps): every attack of the tier, per-sample worst case.

    ``indices`` (dataset positions to evaluate, or None for all) restricts the runner to the
    attacked subset; ``batch_size`` (the suite's ``attack_batch_size``) is the batch the runner
    hands ``apply``, in place of ``--batch-size``, so the attack batches (and with them every
    random start and seed) do not depend on it. ``state`` is the suite's shared engine (built
    once per run).
    """

    key: str = ""
    suite: str = "adversarial"
    uses_model: bool = True
    norm: str = "linf"
    eps: float = 0.0
    attacks: tuple[str, ...] = ()
    indices: np.ndarray | None = None
    batch_size: int | None = None
    blackbox_ids: frozenset[str] = frozenset()
    blackbox_queries: int = 1000
    settings: Any = None
    state: Any = field(default=None, repr=False)

    def prepare(self, run: Any) -> None:
        self.state.ensure(run)

    def passes_per_sample(self, n_classes: int, whitebox: bool) -> tuple[int, int]:
        """Upper bound of (forward+backward, forward) passes per attacked sample: every sample
        survives every attack, plus the confirming predictions and the Square check."""
        from evalsuite.attacks.runners import ATTACKS, passes_per_sample

        fb, f = (1 if whitebox else 0), 1
        for a in self.attacks:
            if ATTACKS[a].whitebox and not whitebox:
                continue
            pf, pq = passes_per_sample(a, self.settings, n_classes)
            fb += pf
            f += pq + (2 if ATTACKS[a].whitebox else 1)
        return fb, f

    def cost(self, n: int) -> tuple[float, float]:
        """Sample-passes for the run plan (:meth:`Condition.cost`): the upper bound of
        :meth:`passes_per_sample`, white-box unless the suite already knows it runs black-box."""
        whitebox = self.state is None or self.state.mode != MODE_BLACK
        fb, f = self.passes_per_sample(self.state.n_classes if self.state is not None else 2, whitebox)
        extra = len(self.blackbox_ids) * (self.blackbox_queries + 3)
        return float(n * f + extra), float(n * fb)

    def apply(self, x: Any, ctx: BatchContext) -> Any:
        engine = self.state.engine
        ids = [str(i) for i in ctx.ids]
        mask = np.array([i in self.blackbox_ids for i in ids], dtype=bool) if self.blackbox_ids else None
        res = engine.attack_batch(
            x,
            ctx.labels,
            ids,
            norm=self.norm,
            eps=self.eps,
            attacks=self.attacks,
            seed=self.state.seed,
            key=self.key,
            blackbox_mask=mask,
            blackbox_queries=self.blackbox_queries,
            settings=self.settings,
        )
        return res.x_adv, res.extras


class _State:
    """What the suite's conditions share: the engine, the white-box module and how it was obtained."""

    def __init__(self, settings: Any, tolerance: float, amp: bool, channels_last: bool, seed: int,
                 surrogate: str | None = None) -> None:
        self.settings = settings
        self.surrogate_spec = surrogate
        self.surrogate: dict[str, Any] | None = None  # identity of the surrogate (transfer mode)
        self.tolerance = tolerance
        self.amp = amp
        self.channels_last = channels_last
        self.seed = seed
        self.engine: Any = None
        self.mode = MODE_WHITE
        self.reason = ""
        self.bridge: dict[str, Any] | None = None
        self.n_classes = 0

    def ensure(self, run: RunContext, inputs: Any = None) -> None:
        if self.engine is not None:
            return
        from evalsuite.attacks.engine import AttackEngine

        model = run.model
        module = self._white_box_module(run, inputs)
        self.engine = AttackEngine(
            model.predict,
            module,
            n_classes=model.info.num_classes,
            device=run.device,
            settings=self.settings,
            amp=self.amp,
            channels_last=self.channels_last,
            # In transfer mode the module is another model: its disagreeing with the deployed one is
            # the attack failing to transfer, not a bridge fault.
            check_agreement=bool(self.bridge and self.bridge.get("used")) and self.mode != MODE_TRANSFER,
        )

    def _white_box_module(self, run: RunContext, inputs: Any) -> Any:
        if self.surrogate_spec is not None:
            return self._surrogate_module(run, inputs)
        model = run.model
        try:
            # The model knows how it offers gradients: its own torch module, or (ONNX) the gradient
            # bridge, checked against predict() on the run's real inputs (Model.checked_torch_module).
            module, check = model.checked_torch_module(inputs, tolerance=self.tolerance, device=run.device)
            self.bridge = check
            return module
        except ModelError as exc:
            self.bridge = getattr(exc, "check", self.bridge)  # a module that disagrees still reports by how much
            self.mode = MODE_BLACK
            self.reason = str(exc)
            log.warning("adversarial: no white-box attacks (%s); running black-box Square through model.predict", exc)
            return None

    def _surrogate_module(self, run: RunContext, inputs: Any) -> Any:
        """The surrogate's checked differentiable module (transfer mode); any failure is exit 2."""
        from evalsuite.models import load_model
        from evalsuite.models.formats import find_format

        spec = str(self.surrogate_spec)
        model = run.model
        device = str(run.device)
        if find_format(spec).name == "onnx":  # onnxruntime may lack the CUDA provider: let it fall back to the CPU
            device = "auto" if device.startswith("cuda") else "cpu"
        surrogate = load_model(spec, device=device)
        a, b = model.info, surrogate.info
        for what, mine, theirs in (("class names", tuple(a.class_names), tuple(b.class_names)),
                                   ("input size", tuple(a.input_size), tuple(b.input_size)),
                                   ("resize", a.resize, b.resize), ("interpolation", a.interpolation, b.interpolation)):
            if mine != theirs:
                raise UsageError(f"--attack-surrogate {spec}: its {what} ({theirs}) differ from the model's ({mine}); "
                                 "a transfer attack needs a surrogate of the same classes and input geometry")
        try:
            module, check = surrogate.checked_torch_module(inputs, tolerance=self.tolerance, device=run.device)
        except ModelError as exc:
            raise ModelError(f"--attack-surrogate {spec}: no checked differentiable module ({exc})") from None
        from evalsuite.quantize.record import quantization_record

        record = quantization_record(model)
        source_sha = ((record or {}).get("source_model") or {}).get("sha256")
        self.surrogate = {"source": spec, "format": b.format, "sha256": b.sha256,
                          "is_quantization_source": None if source_sha is None else source_sha == b.sha256}
        if source_sha is not None and source_sha != b.sha256:
            log.warning("adversarial: surrogate %s is not the FP32 source the INT8 model was quantized from (sha256 "
                        "%s..., recorded %s...); the transfer attack still runs", spec, b.sha256[:12], source_sha[:12])
        self.bridge = check
        self.mode = MODE_TRANSFER
        self.reason = f"attacks crafted on {spec} (sha256 {b.sha256[:12]}) and scored on {a.source}"
        log.info("adversarial: transfer attack from %s", spec)
        return module


def _png_pair(clean: np.ndarray, adv: np.ndarray) -> tuple[bytes, bytes, bytes, float]:
    """Thumbnails of a clean image, its adversarial version and the perturbation (mid-grey = 0,
    stretched to the full range), plus the stretch factor."""
    from evalsuite.report.images import thumbnail_png
    from evalsuite.report.images import to_uint8_hwc as to_u8

    d = adv.astype(np.float64) - clean.astype(np.float64)
    peak = float(np.abs(d).max())
    scale = 0.5 / peak if peak > 0 else 1.0
    vis = 0.5 + d * scale
    return thumbnail_png(to_u8(clean)), thumbnail_png(to_u8(adv)), thumbnail_png(to_u8(vis)), scale


Eps = str | int | float  # "8/255", 1, 0.5: kept as written (the label and gate-path key come from it)


@dataclass
class AdversarialOptions:
    """``suites: {adversarial: {...}}`` (see the module docstring)."""

    tier: str = "smoke"  # smoke | standard | full
    n: int | str | None = DEFAULT_N  # subset size; "all" or null: every sample
    seed: int | None = None  # None: the run seed
    norms: str | list[str] = field(default_factory=lambda: ["linf", "l2"])
    linf_eps: Eps | list[Eps] | None = None  # None: 1/255, 2/255, 4/255, 8/255
    l2_eps: Eps | list[Eps] | None = None  # None: 0.25, 0.5
    attacks: str | list[str] | None = None  # None: the tier's attacks
    steps: int = 10  # PGD steps
    apgd_steps: int = 100  # APGD / APGD-T / FAB iterations
    targets: int = 9  # target classes of APGD-T / FAB-T
    square_queries: int | None = None  # None: 1000 in smoke, 5000 otherwise
    sanity: bool = True  # the gradient-masking checks
    blackbox_n: int = 32
    blackbox_queries: int | None = None  # None: 300 in smoke, 5000 otherwise
    large_eps: Eps = 0.5  # L-inf epsilon of the large-epsilon check
    sanity_n: int = 32
    bridge_tolerance: float = 1e-3
    surrogate: str | None = None  # craft the attacks on this model: a transfer attack (--attack-surrogate)
    examples: int = DEFAULT_EXAMPLES  # example pairs shown per norm
    amp: bool = False
    channels_last: bool = False
    attack_batch_size: int = DEFAULT_ATTACK_BATCH  # the attacks' batch, independent of --batch-size

    def __post_init__(self) -> None:
        from evalsuite.attacks.runners import TIERS
        from evalsuite.attacks.threat import NORMS
        from evalsuite.registry import did_you_mean

        if self.tier not in TIERS:
            raise UsageError(f"suite 'adversarial': unknown tier {self.tier!r}{did_you_mean(self.tier, list(TIERS))}; "
                             f"valid: {', '.join(TIERS)}")
        if self.n == "all":
            self.n = None
        if self.n is not None and (not isinstance(self.n, int) or self.n < 1):
            raise UsageError(f"suite 'adversarial': option n must be a positive integer or 'all', got {self.n!r}")
        norms = [self.norms] if isinstance(self.norms, str) else self.norms
        if not norms:
            raise UsageError("suite 'adversarial': option norms must be a non-empty list of linf, l2")
        self.norms = []
        for nm in (str(v).lower() for v in norms):
            if nm not in NORMS:
                raise UsageError(f"suite 'adversarial': unknown norm {nm!r}{did_you_mean(nm, list(NORMS))}; "
                                 f"valid: {', '.join(NORMS)}")
            if nm not in self.norms:
                self.norms.append(nm)
        for name in ("steps", "apgd_steps", "targets", "square_queries", "blackbox_n", "blackbox_queries", "sanity_n",
                     "examples", "attack_batch_size"):
            value, minimum = getattr(self, name), 0 if name in ("blackbox_n", "examples") else 1
            if value is not None and value < minimum:
                raise UsageError(f"suite 'adversarial': option {name} must be an integer >= {minimum}, got {value!r}")
        if self.surrogate is not None and not self.surrogate.strip():
            raise UsageError("suite 'adversarial': option surrogate must name a model (--attack-surrogate MODEL)")
        tol = self.bridge_tolerance
        if not tol > 0 or not math.isfinite(tol):
            raise UsageError(f"suite 'adversarial': option bridge_tolerance must be a positive number, got {tol!r}")


class AdversarialSuite(Suite):
    """Robust accuracy under L-inf and L2 attacks (see the module docstring for options and metrics)."""

    name = "adversarial"
    Options = AdversarialOptions

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        from evalsuite.attacks.runners import TIERS, AttackSettings, expand_attacks
        from evalsuite.attacks.threat import parse_eps, parse_eps_list

        o = self.opts
        self.tier = o.tier
        self.n: int | None = o.n
        self.seed = o.seed
        self.norms: list[str] = o.norms
        self.eps = {nm: parse_eps_list(getattr(o, f"{nm}_eps"), nm) for nm in self.norms}
        self.attacks = expand_attacks(o.attacks) if o.attacks is not None else list(TIERS[o.tier])
        smoke = o.tier == "smoke"
        self.settings = AttackSettings(
            pgd_steps=o.steps,
            apgd_steps=o.apgd_steps,
            fab_steps=o.apgd_steps,
            targets=o.targets,
            square_queries=o.square_queries or (1000 if smoke else 5000),
        )
        self.sanity = o.sanity
        self.blackbox_n = o.blackbox_n
        self.blackbox_queries = o.blackbox_queries or (300 if smoke else 5000)
        self.large_eps = parse_eps(o.large_eps, "linf")
        self.sanity_n = o.sanity_n
        self.tolerance = o.bridge_tolerance
        self.n_examples = o.examples
        self.amp = o.amp
        self.channels_last = o.channels_last
        self.attack_batch_size = o.attack_batch_size
        self.surrogate = o.surrogate
        self._state: _State | None = None
        self._conditions: list[AttackCondition] = []
        self._estimate: dict[str, Any] = {}
        self._subset: np.ndarray = np.empty(0, np.int64)

    # ----------------------------------------------------------------------------- conditions

    def _subset_positions(self, run: RunContext, seed: int) -> np.ndarray:
        from evalsuite.data.sampling import subset_positions

        return subset_positions(np.asarray(run.labels), self.n, seed)  # the rule the perturbation suites share

    def _real_inputs(self, run: RunContext, positions: np.ndarray, k: int) -> Any:
        if run.image_source is None or len(positions) == 0:
            return None
        from evalsuite.tensors import to_tensor

        images = run.image_source(positions[:k])
        return to_tensor(np.asarray(images), run.device)

    def conditions(self, run: RunContext) -> list[Condition]:
        seed = int(run.seed if self.seed is None else self.seed)
        state = _State(self.settings, self.tolerance, self.amp, self.channels_last, seed, self.surrogate)
        state.n_classes = int(run.model.info.num_classes)
        self._state = state
        positions = self._subset_positions(run, seed)
        self._subset = positions
        if int(run.batch_size) != self.attack_batch_size:
            log.info("adversarial: attacks run in batches of %d (suites.adversarial.attack_batch_size), not "
                     "--batch-size %d, so that --batch-size cannot change their results", self.attack_batch_size,
                     int(run.batch_size))
        # The bridge check and the cost estimate use the first attack batch.
        inputs = self._real_inputs(run, positions, max(1, min(self.attack_batch_size, len(positions))))
        state.ensure(run, inputs)
        ids = np.asarray(run.dataset.ids)

        # One generator, drawn in this order: the black-box check's samples, then the sanity subset.
        rng = np.random.default_rng(seed + 1)
        bb_pos = np.sort(rng.choice(positions, size=min(self.blackbox_n, len(positions)), replace=False)) \
            if len(positions) else positions
        bb_ids = frozenset(str(ids[p]) for p in bb_pos)

        common = {"tier": self.tier, "n": int(len(positions)), "seed": seed, "mode": state.mode,
                  "settings": asdict(self.settings), "attack_batch_size": self.attack_batch_size}
        if state.mode == MODE_BLACK:
            common["reason"] = state.reason
        if state.mode == MODE_TRANSFER:
            common["surrogate"] = dict(state.surrogate or {})
        conds: list[AttackCondition] = []
        for norm in self.norms:
            conds += self._threat_conditions(norm, self._attack_names(norm, run.model.info.num_classes, state),
                                             positions, bb_ids, common, state)
        if self.sanity:
            sanity_pos = positions[np.sort(rng.choice(len(positions), size=min(self.sanity_n, len(positions)),
                                                      replace=False))] if len(positions) else positions
            conds.append(self._sanity_condition(sanity_pos, common, state))
        self._conditions = conds
        self._estimate = self._estimate_cost(run, conds, inputs)
        return list(conds)

    def _attack_names(self, norm: str, n_classes: int, state: _State) -> list[str]:
        """The attacks that run for ``norm``: the tier's (or configured) ones it supports; Square when black-box."""
        from evalsuite.attacks.runners import supported

        if state.mode == MODE_BLACK:
            return ["square"]
        names = []
        for a in self.attacks:
            ok, why = supported(a, norm, n_classes)
            if ok:
                names.append(a)
            else:
                log.info("adversarial: %s skipped for %s (%s)", a, norm, why)
        if not names:
            raise UsageError(f"suite 'adversarial': none of the attacks {self.attacks} supports {norm}")
        return names

    def _threat_conditions(self, norm: str, names: list[str], positions: np.ndarray, bb_ids: frozenset[str],
                           common: dict[str, Any], state: _State) -> list[AttackCondition]:
        """One condition per epsilon of ``norm``; the largest also gets the Square check on ``bb_ids``."""
        from evalsuite.attacks.threat import NORM_LABELS

        conds = []
        eps_list = self.eps[norm]
        for i, eps in enumerate(eps_list):
            largest = i == len(eps_list) - 1
            check = (self.sanity and largest and state.mode == MODE_WHITE and self.blackbox_n > 0
                     and "square" not in names)
            params = dict(common, norm=norm, norm_label=NORM_LABELS[norm], eps=eps.value, eps_label=eps.label,
                          eps_key=eps.key, attacks=list(names),
                          blackbox_check={"n": len(bb_ids), "queries": self.blackbox_queries} if check else None)
            conds.append(AttackCondition(
                identity=ConditionIdentity(suite=self.name, kind="attack", parts=(norm, eps.key)),
                params=params,
                norm=norm,
                eps=eps.value,
                attacks=tuple(names),
                indices=positions,
                batch_size=self.attack_batch_size,
                blackbox_ids=bb_ids if check else frozenset(),
                blackbox_queries=self.blackbox_queries,
                settings=self.settings,
                state=state,
            ))
        return conds

    def _sanity_condition(self, positions: np.ndarray, common: dict[str, Any], state: _State) -> AttackCondition:
        """The large-epsilon check: PGD-20 (Square when black-box) at L-inf ``large_eps`` on ``positions``."""
        from dataclasses import replace

        from evalsuite.attacks.threat import NORM_LABELS

        names = ("square",) if state.mode == MODE_BLACK else ("pgd",)
        settings = replace(self.settings, pgd_steps=max(SANITY_PGD_STEPS, self.settings.pgd_steps))
        params = dict(common, norm="linf", norm_label=NORM_LABELS["linf"], eps=self.large_eps.value,
                      eps_label=self.large_eps.label, eps_key=self.large_eps.key, attacks=list(names),
                      sanity=True, n=int(len(positions)), settings=asdict(settings), blackbox_check=None)
        return AttackCondition(
            identity=ConditionIdentity(suite=self.name, kind="attack", parts=("sanity", f"linf_{self.large_eps.key}")),
            params=params,
            norm="linf",
            eps=self.large_eps.value,
            attacks=names,
            indices=positions,
            batch_size=self.attack_batch_size,
            settings=settings,
            state=state,
        )

    def _estimate_cost(self, run: RunContext, conds: list[AttackCondition], inputs: Any) -> dict[str, Any]:
        """Upper bound of passes (no sample ever broken) and the time they take, from one timed pass."""
        from evalsuite.attacks.engine import margin_gradient_flags

        state = self._state
        assert state is not None
        engine = state.engine
        n_classes = run.model.info.num_classes
        fb = f = 0
        for c in conds:
            n = len(c.indices) if c.indices is not None else len(run.labels)
            fb_c, f_c = c.passes_per_sample(n_classes, engine.whitebox)
            fb += n * fb_c
            f += n * f_c
            if c.blackbox_ids:
                f += len(c.blackbox_ids) * (c.blackbox_queries + 3)
        est: dict[str, Any] = {"forward_backward_passes": int(fb), "forward_passes": int(f),
                               "note": "sample-passes, upper bound (every sample survives every attack)"}
        if inputs is not None and len(inputs):
            import torch

            y = torch.as_tensor(np.asarray(run.labels)[self._subset[: len(inputs)]], device=inputs.device).long()
            t_f = _timed(lambda: run.model.predict(inputs))
            est["seconds_per_forward_sample"] = t_f / len(inputs)
            seconds = f * t_f / len(inputs)
            if engine.whitebox:
                t_fb = _timed(lambda: margin_gradient_flags(engine.module, inputs, y))
                est["seconds_per_forward_backward_sample"] = t_fb / len(inputs)
                seconds += fb * t_fb / len(inputs)
            est["seconds"] = seconds
            est["batch"] = int(len(inputs))
        # INFO normally; WARNING when the run will be long enough that someone should know first.
        level = logging.WARNING if est.get("seconds", 0.0) > LONG_RUN_SECONDS else logging.INFO
        log.log(
            level,
            "adversarial (%s tier, %s, %d conditions, %d samples): up to %.3g forward+backward and %.3g forward "
            "sample-passes, estimated %s",
            self.tier, state.mode, len(conds), len(self._subset), fb, f,
            f"{est['seconds']:.0f} s" if "seconds" in est else "(not timed)",
        )
        return est

    def metric_specs(self, run: RunContext, conditions: Sequence[Condition]) -> list[MetricSpec]:
        mine = [c for c in conditions if c.suite == self.name and not c.params.get("sanity")]
        if not mine:
            return []
        specs = [MetricSpec("adversarial.clean_accuracy"), MetricSpec("adversarial.worst.robust_accuracy"),
                 *[MetricSpec(f"adversarial.{name}", ci=False)
                   for name in ("violations", "nonfinite_outputs", "white_box", "bridge.max_abs_diff")]]
        for c in mine:
            prefix = f"adversarial.{c.params['norm']}.{c.params['eps_key']}"
            specs += specs_under(prefix, ("robust_accuracy", "clean_accuracy", "attack_success_rate", "mean_linf",
                                          "mean_l2"))
            specs.append(MetricSpec(f"{prefix}.violations", ci=False))
        if self.sanity:
            specs.append(MetricSpec("adversarial.sanity.large_eps_robust_accuracy"))
            specs += specs_under("adversarial.sanity", ("monotone", "blackbox_only_successes", "bad_gradient_fraction"),
                                 ci=False)
        return specs

    # ------------------------------------------------------------------------------- summary

    def summarize(self, run: RunContext, preds: PredictionSet) -> SuiteOutput:
        seed = int(run.seed if self.seed is None else self.seed)
        items = preds.by_suite(self.name)
        main = [p for p in items if not p.params.get("sanity")]
        sanity_items = [p for p in items if p.params.get("sanity")]
        state = self._state
        mode = state.mode if state is not None else (main[0].params.get("mode", MODE_WHITE) if main else MODE_WHITE)
        reason = state.reason if state is not None else (main[0].params.get("reason", "") if main else "")
        whitebox = mode == MODE_WHITE
        gradients = mode != MODE_BLACK  # white-box attacks ran (on the model, or on a transfer surrogate)
        surrogate = state.surrogate if state is not None else (main[0].params.get("surrogate") if main else None)
        report = self._report_header(mode, reason, seed, main)
        report["surrogate"] = surrogate
        if not main:
            report["note"] = "no adversarial conditions ran"
            return SuiteOutput(metrics={}, checks=[], report=report)

        metrics, totals = self._threat_metrics(main, seed, report)
        cc = np.asarray(main[0].extras["clean_correct"], bool)
        metrics["clean_accuracy"] = mean_metric(cc.astype(np.float64), seed=seed)
        leaves = [(norm, key, node["robust_accuracy"]) for norm in report["attacks"] for key, node in metrics[norm].items()]
        worst = min(leaves, key=lambda t: (t[2]["value"] if t[2]["value"] is not None else math.inf))
        metrics["worst"] = {"robust_accuracy": dict(worst[2], condition=f"{worst[0]}/{worst[1]}")}
        metrics["violations"] = metric(totals["violations"], totals["outputs"], None, "lower")
        metrics["nonfinite_outputs"] = metric(totals["nonfinite"], totals["outputs"], None, "lower")
        metrics["white_box"] = metric(1.0 if whitebox else 0.0, 1, None, "higher", attack_mode=ATTACK_MODES.get(mode, mode),
                                      **({"surrogate": surrogate} if surrogate else {}))
        if state is not None and state.bridge is not None:
            metrics["bridge"] = {"max_abs_diff": metric(state.bridge["max_abs_diff"], state.bridge["n_checked"], None,
                                                        "lower", tolerance=state.bridge["tolerance"])}
        report["curves"] = self._curves(report, metrics)
        checks = self._builtin_checks(whitebox, reason, transfer=mode == MODE_TRANSFER)
        if self.sanity:
            # Transfer mode: the gradient check applies (to the surrogate), the Square comparison does
            # not (a query attack on the deployed model beating a transfer attack is expected).
            metrics["sanity"], sanity_rows, sanity_checks = self._sanity(main, sanity_items, gradients, seed,
                                                                         blackbox=whitebox)
            report["sanity"] = sanity_rows
            checks.extend(sanity_checks)
        report["examples"] = self._examples(run, main, whitebox)
        return SuiteOutput(metrics=metrics, checks=checks, report=report)

    def _report_header(self, mode: str, reason: str, seed: int, main: list[Predictions]) -> dict[str, Any]:
        """The report data's fixed part (what ran, how, the tolerances); the rest is filled in by summarize."""
        from evalsuite.attacks.threat import L2_ATOL, L2_RTOL, LINF_ATOL

        state = self._state
        return {
            "tier": self.tier,
            "mode": mode,
            "reason": reason,
            "n": int(len(self._subset)) if len(self._subset) else (len(main[0]) if main else 0),
            "seed": seed,
            "attacks": {},
            "bridge": state.bridge if state is not None else None,
            "estimate": self._estimate,
            "tolerances": {"linf_atol": LINF_ATOL, "l2_rtol": L2_RTOL, "l2_atol": L2_ATOL},
            "curves": {},
            "rows": [],
            "sanity": [],
            "examples": [],
        }

    def _threat_metrics(self, main: list[Predictions], seed: int, report: dict[str, Any]
                        ) -> tuple[dict[str, Any], dict[str, int]]:
        """Metrics per (norm, eps) in the configured order, their report rows (into ``report``) and totals."""
        from evalsuite.attacks.threat import NORM_LABELS

        metrics: dict[str, Any] = {}
        rows = []
        totals = {"violations": 0, "nonfinite": 0, "outputs": 0}
        order = {nm: i for i, nm in enumerate(self.norms)}
        for p in sorted(main, key=lambda q: (order.get(q.params["norm"], len(order)), q.params["eps"])):
            norm, key = p.params["norm"], p.params["eps_key"]
            node, row = self._condition_metrics(p, seed)
            metrics.setdefault(norm, {})[key] = node
            totals["violations"] += int(node["violations"]["value"])
            totals["nonfinite"] += int(np.asarray(p.extras.get("nonfinite", np.zeros(0))).sum())
            totals["outputs"] += len(p)
            row.update(norm=norm, norm_label=NORM_LABELS.get(norm, norm), eps_label=p.params["eps_label"],
                       eps_key=key, eps=p.params["eps"], attacks=p.params.get("attacks", []))
            rows.append(row)
            report["attacks"][norm] = p.params.get("attacks", [])
        report["rows"] = rows
        return metrics, totals

    @staticmethod
    def _curves(report: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
        """Robust accuracy against eps per norm, starting at eps 0 = clean accuracy on the subset."""
        from evalsuite.attacks.threat import NORM_LABELS

        curves = {}
        for norm in report["attacks"]:
            if norm in metrics:
                pts = sorted((r["eps"], r["robust_accuracy"], r["eps_label"]) for r in report["rows"] if r["norm"] == norm)
                curves[norm] = {
                    "label": NORM_LABELS.get(norm, norm),
                    "points": [[0.0, metrics["clean_accuracy"]["value"], "clean"]] + [list(t) for t in pts],
                }
        return curves

    @staticmethod
    def _builtin_checks(whitebox: bool, reason: str, transfer: bool = False) -> list[Gate]:
        """The budget FAIL gate, and the WARN gate when only black-box attacks could run."""
        from evalsuite.attacks.threat import L2_RTOL, LINF_ATOL

        checks = [Gate.check(
            "adversarial examples within budget",
            "adversarial.violations",
            max=0,
            severity=Severity.FAIL,
            description="Every adversarial example must lie within its epsilon ball (float tolerance "
                           f"{LINF_ATOL:g} L-inf, {L2_RTOL:g} relative L2) and in [0, 1]; an attack that leaves "
                           "the threat model is a bug in the attack, and its examples were not counted.",
        )]
        if transfer:
            checks.append(Gate.check(
                "adversarial: white-box attacks ran",
                "adversarial.white_box",
                min=1,
                description="Transfer attack: the attacks were crafted on a surrogate (" + reason + "), not on the "
                               "deployed model's own gradients. Robust accuracy is an upper bound: a white-box "
                               "attacker of the deployed model may do better.",
            ))
        elif not whitebox:
            checks.append(Gate.check(
                "adversarial: white-box attacks ran",
                "adversarial.white_box",
                min=1,
                description="Black-box only: no differentiable module could be had (" + reason + "). Robust "
                               "accuracy comes from the query-only Square attack and is an upper bound.",
            ))
        return checks

    @staticmethod
    def _condition_metrics(p: Predictions, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
        ex = p.extras
        clean_correct = np.asarray(ex["clean_correct"], bool)
        robust = (p.predicted == p.labels) & clean_correct & p.finite
        broken = clean_correct & ~robust
        linf = np.asarray(ex["linf"], np.float64)
        l2 = np.asarray(ex["l2"], np.float64)
        violations = int(np.asarray(ex["violation"]).sum())
        node = {
            "robust_accuracy": mean_metric(robust.astype(np.float64), seed=seed),
            "clean_accuracy": mean_metric(clean_correct.astype(np.float64), seed=seed),
            "attack_success_rate": mean_metric(broken[clean_correct].astype(np.float64), direction="lower", seed=seed),
            "mean_linf": mean_metric(linf[broken], direction="none", seed=seed),
            "mean_l2": mean_metric(l2[broken], direction="none", seed=seed),
            "violations": metric(violations, len(p), None, "lower"),
        }
        attack = np.asarray(ex["attack"]).astype(str)
        first: dict[str, int] = {}
        for a in attack[broken]:
            first[a] = first.get(a, 0) + 1
        row = {
            "key": p.key,
            "n": len(p),
            "robust_accuracy": node["robust_accuracy"]["value"],
            "robust_ci": node["robust_accuracy"]["ci"],
            "clean_accuracy": node["clean_accuracy"]["value"],
            "attack_success_rate": node["attack_success_rate"]["value"],
            "mean_linf": node["mean_linf"]["value"],
            "mean_l2": node["mean_l2"]["value"],
            "violations": violations,
            "first_success": first,
            "bridge_disagreements": int(np.asarray(ex.get("bridge_disagree", np.zeros(0))).sum()),
            "confirmed_by_predict_only": int(((attack != "") & (attack != "misclassified") & robust).sum()),
        }
        return node, row

    def _sanity(self, main: list[Predictions], sanity_items: list[Predictions], whitebox: bool,
                seed: int, blackbox: bool | None = None) -> tuple[dict[str, Any], list[dict[str, Any]], list[Gate]]:
        """The gradient-masking checks: (metrics under ``adversarial.sanity``, report rows, WARN gates)."""
        out: dict[str, Any] = {}
        rows: list[dict[str, Any]] = []
        checks: list[Gate] = []
        parts = [_sanity_monotone(main)]
        if whitebox if blackbox is None else blackbox:
            parts.append(_sanity_blackbox(main))
        if sanity_items:
            parts.append(_sanity_large_eps(sanity_items[0], seed))
        if whitebox:
            parts.append(_sanity_gradients(main))
        for part in parts:
            if part is None:
                continue
            name, leaf, row, check = part
            out[name] = leaf
            rows.append(row)
            if check is not None:
                checks.append(check)
        return out, rows, checks

    def _examples(self, run: RunContext, main: list[Predictions], whitebox: bool) -> list[dict[str, Any]]:
        """Example pairs at the largest epsilon of each norm, saved as PNG artifacts."""
        if self.n_examples <= 0:
            return []
        class_names = list(run.model.info.class_names)
        conds = {c.key: c for c in self._conditions}
        out: list[dict[str, Any]] = []
        by_norm: dict[str, Predictions] = {}
        for p in main:
            cur = by_norm.get(p.params["norm"])
            if cur is None or p.params["eps"] > cur.params["eps"]:
                by_norm[p.params["norm"]] = p
        for norm, p in by_norm.items():
            pairs = self._example_pairs(run, p, conds.get(p.key))
            row_of = {str(i): r for r, i in enumerate(p.ids)}
            for k, ex in enumerate(pairs[: self.n_examples]):
                r = row_of.get(ex["id"])
                if r is None:
                    continue
                adv_pred = int(np.argmax(np.asarray(run.model.predict(_as_batch(ex["adversarial"], run.device)))[0]))
                clean_pred = int(np.asarray(p.extras["clean_pred"])[r])
                label = int(p.labels[r])
                if adv_pred == label:
                    continue
                c_png, a_png, d_png, scale = _png_pair(ex["clean"], ex["adversarial"])
                stem = f"adversarial_{norm}_{p.params['eps_key']}_{k}"
                d = ex["adversarial"].astype(np.float64) - ex["clean"].astype(np.float64)
                out.append({
                    "norm": norm,
                    "eps_label": p.params["eps_label"],
                    "id": ex["id"],
                    "label": class_names[label] if label < len(class_names) else str(label),
                    "clean_pred": class_names[clean_pred] if 0 <= clean_pred < len(class_names) else str(clean_pred),
                    "adv_pred": class_names[adv_pred] if adv_pred < len(class_names) else str(adv_pred),
                    "attack": ex.get("attack", ""),
                    "linf": float(np.abs(d).max()),
                    "l2": float(np.sqrt((d**2).sum())),
                    "magnification": scale,
                    "clean": run.save_artifact(f"{stem}_clean.png", c_png),
                    "adversarial": run.save_artifact(f"{stem}_adv.png", a_png),
                    "perturbation": run.save_artifact(f"{stem}_delta.png", d_png),
                })
        return out

    def _example_pairs(self, run: RunContext, p: Predictions, cond: AttackCondition | None) -> list[dict[str, Any]]:
        """The first ``examples`` broken samples of a condition, attacked again on their own.

        Always derived from the stored predictions (which rows broke) and the keyed attack, never
        from what happened to be in memory, so a run and its ``--resume`` draw the same pairs and
        write the same PNGs.
        """
        if cond is None or self._state is None or run.image_source is None:
            return []
        self._state.ensure(run)
        if self._state.engine is None:
            return []
        cc = np.asarray(p.extras["clean_correct"], bool)
        broken = cc & (p.predicted != p.labels)
        if "attack" in p.extras:
            broken &= np.asarray(p.extras["attack"]).astype(str) != ""
        rows = np.flatnonzero(broken)[: self.n_examples]
        if len(rows) == 0:
            return []
        import torch

        from evalsuite.tensors import to_tensor

        x = to_tensor(np.asarray(run.image_source(p.index[rows])), run.device)
        y = torch.as_tensor(p.labels[rows], device=x.device).long()
        ids = [str(i) for i in p.ids[rows]]
        mask = np.array([i in cond.blackbox_ids for i in ids], dtype=bool) if cond.blackbox_ids else None
        res = self._state.engine.attack_batch(
            x, y, ids, norm=cond.norm, eps=cond.eps, attacks=cond.attacks, seed=self._state.seed, key=cond.key,
            blackbox_mask=mask, blackbox_queries=cond.blackbox_queries, keep_examples=len(rows),
            settings=cond.settings,
        )
        return res.examples


# A sanity check's result: (metric name under adversarial.sanity, its leaf, its report row, its WARN gate or None).
SanityCheck = tuple[str, dict[str, Any], dict[str, Any], Gate | None]


def _robust(p: Predictions) -> np.ndarray:
    """Per sample of ``p``: classified correctly, clean and attacked (finite logits)."""
    cc = np.asarray(p.extras["clean_correct"], bool)
    return (p.predicted == p.labels) & cc & p.finite


def _sanity_monotone(main: list[Predictions]) -> SanityCheck:
    """Robust accuracy must not rise with epsilon, per norm."""
    problems = []
    by_norm: dict[str, list[tuple[float, float, str]]] = {}
    for p in main:
        robust = _robust(p).mean() if len(p) else math.nan
        by_norm.setdefault(p.params["norm"], []).append((p.params["eps"], float(robust), p.params["eps_label"]))
    for norm, pts in by_norm.items():
        pts.sort()
        for (_, r0, l0), (_, r1, l1) in zip(pts, pts[1:], strict=False):
            if r1 > r0 + 1e-12:
                problems.append(f"{norm}: {l1} {r1:.1%} > {l0} {r0:.1%}")
    desc = ("Robust accuracy must not rise with a larger epsilon: a larger budget contains every smaller one. "
            "A rise means an attack failed at the larger epsilon where it succeeded at a smaller one, which "
            "suggests gradient masking or too few attack iterations.")
    row = {"name": "robust accuracy non-increasing in epsilon", "ok": not problems,
           "value": "; ".join(problems) or "yes", "description": desc}
    check = Gate.check("adversarial sanity: monotone in epsilon", "adversarial.sanity.monotone", min=1,
                       description=desc)
    return "monotone", metric(0.0 if problems else 1.0, len(main), None, "higher"), row, check


def _sanity_blackbox(main: list[Predictions]) -> SanityCheck | None:
    """Square (query-only) must not break samples every white-box attack missed; None when nothing was checked."""
    tried = sum(int(np.asarray(p.extras.get("blackbox_tried", np.zeros(0))).sum()) for p in main)
    succ = sum(int(np.asarray(p.extras.get("blackbox_success", np.zeros(0))).sum()) for p in main)
    if not tried:
        return None
    desc = ("The query-only Square attack (run through model.predict) broke samples that every "
            "white-box attack failed on. Gradient attacks should dominate: this suggests gradient "
            "masking, or a bridge whose gradients do not match the deployed model.")
    row = {"name": "black-box attack no stronger than white-box", "ok": succ == 0,
           "value": f"{succ} of {tried} checked sample(s) broken only by Square", "description": desc}
    check = Gate.check("adversarial sanity: black-box not stronger", "adversarial.sanity.blackbox_only_successes",
                       max=0, description=desc)
    return "blackbox_only_successes", metric(succ, tried, None, "lower"), row, check


def _sanity_large_eps(p: Predictions, seed: int) -> SanityCheck:
    """At a very large L-inf epsilon almost nothing may stay robust."""
    leaf = mean_metric(_robust(p).astype(np.float64), seed=seed, eps=p.params["eps_label"])
    desc = (f"At L-inf epsilon {p.params['eps_label']} an attacker can wash out almost any image, so robust "
            f"accuracy should be near zero (at most {LARGE_EPS_MAX_ACCURACY:.0%}). If it is not, the attacks "
            "are not working: gradient masking, or a broken gradient bridge.")
    row = {"name": f"robust accuracy near zero at L-inf {p.params['eps_label']}",
           "ok": bool(leaf["value"] is not None and leaf["value"] <= LARGE_EPS_MAX_ACCURACY),
           "value": f"{leaf['value']:.1%} of {len(p)}" if leaf["value"] is not None else "n/a",
           "description": desc}
    check = None if leaf["value"] is None else Gate.check(
        "adversarial sanity: large epsilon breaks the model", "adversarial.sanity.large_eps_robust_accuracy",
        max=LARGE_EPS_MAX_ACCURACY, description=desc)
    return "large_eps_robust_accuracy", leaf, row, check


def _sanity_gradients(main: list[Predictions]) -> SanityCheck:
    """Share of attacked samples with a zero or NaN input gradient (or NaN attack output), worst condition."""
    frac = 0.0
    n_att = 0
    for p in main:
        cc = np.asarray(p.extras["clean_correct"], bool)
        bad = (np.asarray(p.extras["grad_zero"], bool) | np.asarray(p.extras["grad_nan"], bool)
               | (np.asarray(p.extras.get("nonfinite", np.zeros(len(p))), np.int64) > 0))
        if cc.any():
            f = float(bad[cc].mean())
            if f >= frac:
                frac, n_att = f, int(cc.sum())
    desc = (f"Share of attacked samples whose input gradient (of the logit margin) is exactly zero or NaN, "
            f"or whose attack produced NaN/inf; more than {GRADIENT_BAD_MAX:.0%} suggests gradient "
            "masking (saturating or quantising layers) or a broken bridge, and white-box numbers are "
            "then unreliable.")
    row = {"name": "gradients present", "ok": frac <= GRADIENT_BAD_MAX,
           "value": f"{frac:.1%} of {n_att} sample(s) with zero/NaN gradient", "description": desc}
    check = Gate.check("adversarial sanity: gradients present", "adversarial.sanity.bad_gradient_fraction",
                       max=GRADIENT_BAD_MAX, description=desc)
    return "bad_gradient_fraction", metric(frac, n_att, None, "lower"), row, check


def _as_batch(image: np.ndarray, device: str) -> Any:
    import torch

    return torch.as_tensor(np.asarray(image, dtype=np.float32)[None], device=device)


def _timed(fn: Any) -> float:
    """Seconds of one call of ``fn`` after a warm-up call."""
    fn()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
