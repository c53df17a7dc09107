"""``evalsuite compare CANDIDATE REFERENCE``: the paired comparison of two finished runs.

Two runs measured on identical data, conditions and seed hold per-sample predictions of the
same inputs (every condition's randomness is keyed by seed, condition key and sample id), so
they can be compared pair by pair exactly as ``run --reference`` does
(:mod:`evalsuite.suites.compare`), without running a model. Everything is checked before
anything is written: both results.json validate, the data fingerprints, seeds, class names
and condition keys and parameters are equal (attack conditions may differ in how the attack
reached the model, ``mode``/``reason``, since each run attacked its own model), and every
condition's prediction file exists in both ``predictions/`` folders. The output folder is
written through :class:`~evalsuite.run_folder.RunFolder` (results.json with
``metrics.compare``, gates.json, junit.xml, summary.md, scorecard.html), gated by ``--policy``
(default: ``presets/policy-compare.yaml``), exit 0/1 as ``run``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from evalsuite.errors import UsageError

log = logging.getLogger(__name__)

#: Attack parameters that say how a run reached its own model, not what was measured.
MODEL_SPECIFIC_PARAMS = frozenset({"mode", "reason"})
DEFAULT_COMPARE_POLICY = "policy-compare.yaml"


@dataclass
class _Key:
    """The part of a condition :meth:`CompareSuite.metric_specs` reads (its key), for stored runs."""

    key: str
    uses_model: bool = False


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def run_folder_of(spec: str | Path) -> Path:
    """The run folder named by ``spec`` (the folder itself or its results.json)."""
    p = Path(spec)
    return p.parent if p.is_file() else p


def _measured(params: Any, kind_attack: bool) -> Any:
    from evalsuite.conditions import measured_params

    m = measured_params(params)
    if kind_attack and isinstance(m, dict):
        m = {k: v for k, v in m.items() if k not in MODEL_SPECIFIC_PARAMS}
    return json.loads(json.dumps(m, sort_keys=True, default=str))


def check_comparable(a: dict[str, Any], b: dict[str, Any], a_name: str, b_name: str) -> list[str]:
    """The condition keys both runs measured identically; UsageError naming the first difference."""
    from evalsuite.conditions import condition_identity

    pa, pb = a.get("provenance", {}), b.get("provenance", {})
    if pa.get("data_fingerprint") != pb.get("data_fingerprint"):
        raise UsageError(f"{a_name} and {b_name} ran on different data (fingerprints {str(pa.get('data_fingerprint'))[:12]} "
                         f"vs {str(pb.get('data_fingerprint'))[:12]}); a paired comparison needs identical samples")
    if pa.get("seed") != pb.get("seed"):
        raise UsageError(f"{a_name} and {b_name} ran with different seeds ({pa.get('seed')} vs {pb.get('seed')}); "
                         "their perturbed pixels differ, so the predictions are not paired")
    ca, cb = list(a.get("model", {}).get("class_names", [])), list(b.get("model", {}).get("class_names", []))
    if ca != cb:
        raise UsageError(f"{a_name} and {b_name} have different class names ({len(ca)} vs {len(cb)} classes or another "
                         "order); a paired comparison needs the same classes")
    conds_a, conds_b = a.get("conditions", {}), b.get("conditions", {})
    if list(conds_a) != list(conds_b):
        only = sorted(set(conds_a) ^ set(conds_b))
        raise UsageError(f"{a_name} and {b_name} measured different conditions"
                         + (f" ({only[0]!r} is in only one of them)" if only else " (in another order)"))
    for key, ca_ in conds_a.items():
        cb_ = conds_b[key]
        ident = condition_identity(key, str(ca_.get("suite", "")), ca_.get("params") or {})
        attack = ident.kind == "attack"
        if _measured(ca_.get("params"), attack) != _measured(cb_.get("params"), attack):
            raise UsageError(f"condition {key!r} was measured with other parameters in {a_name} than in {b_name}; "
                             "rerun both with the same suite configuration")
        if ca_.get("n") != cb_.get("n"):
            raise UsageError(f"condition {key!r} covers {ca_.get('n')} samples in {a_name} but {cb_.get('n')} in {b_name}")
    return list(conds_a)


def _load_predictions(folder: Path, key: str, name: str) -> Any:
    from evalsuite.predictions import condition_filename, read_predictions

    path = folder / "predictions" / condition_filename(key)
    if not path.is_file():
        raise UsageError(f"{name} has no predictions of condition {key!r} ({path}); compare needs both run folders whole")
    try:
        return read_predictions(path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def compare_runs(candidate: str | Path, reference: str | Path, *, out: str | Path, policy: str | None = None,
                 fail_on: str = "fail", n_boot: int | None = None, mid_p: bool = False) -> Any:
    """Compare two finished runs pair by pair and write ``out`` (see the module docstring);
    returns an :class:`evalsuite.api.RunOutcome`."""
    from evalsuite.api import RunOutcome, package_versions, reference_record
    from evalsuite.atomic_io import atomic_write_text
    from evalsuite.config import config_hash
    from evalsuite.decision import Decision
    from evalsuite.gates import check_policy, evaluate, load_policy_record
    from evalsuite.predictions import PredictionSet
    from evalsuite.report import write_reports
    from evalsuite.results import SCHEMA_VERSION, read_results_document, write_results
    from evalsuite.run_folder import RunFolder
    from evalsuite.suites.base import RunContext
    from evalsuite.suites.compare import CompareSuite

    started, t0 = _now(), time.perf_counter()
    folder_a, folder_b = run_folder_of(candidate), run_folder_of(reference)
    a, raw_a, path_a = read_results_document(folder_a)
    b, raw_b, path_b = read_results_document(folder_b)
    keys = check_comparable(a, b, str(folder_a), str(folder_b))
    RunFolder(out).check()
    if policy is None:
        with resources.as_file(resources.files("evalsuite.presets").joinpath(DEFAULT_COMPARE_POLICY)) as p:
            gates, record = load_policy_record(str(p))
    else:
        gates, record = load_policy_record(policy)
    options: dict[str, Any] = {"mid_p": bool(mid_p), **({"n_boot": int(n_boot)} if n_boot is not None else {})}
    suite = CompareSuite(options)
    calib = (a.get("config", {}).get("suites", {}) or {}).get("calibration")
    if isinstance(calib, dict) and isinstance(calib.get("n_bins"), int):
        suite.n_bins = calib["n_bins"]  # as run --reference would bin (the calibration suite's n_bins)
    seed = int(a["provenance"]["seed"])
    info = SimpleNamespace(class_names=list(a["model"].get("class_names", [])))
    ctx = RunContext(model=SimpleNamespace(info=info), dataset=None, labels=np.empty(0, np.int64),
                     out_dir=Path(out), seed=seed)
    check_policy(gates, suite.metric_specs(ctx, [_Key(k) for k in keys]), None)
    cand = {k: _load_predictions(folder_a, k, str(folder_a)) for k in keys}
    ref = {k: _load_predictions(folder_b, k, str(folder_b)) for k in keys}
    for k in keys:
        if not np.array_equal(cand[k].index, ref[k].index):
            raise UsageError(f"condition {k!r} covers other samples in {folder_a} than in {folder_b}")
    preds = PredictionSet(cand, reference=PredictionSet(ref))
    resolved = {"compare": {"candidate": str(path_a), "candidate_sha256": hashlib.sha256(raw_a).hexdigest(),
                            "reference": str(path_b), "reference_sha256": hashlib.sha256(raw_b).hexdigest()},
                "suites": {"compare": dict(suite.options)}, "seed": seed}
    out_dir = Path(out)
    with RunFolder(out_dir) as folder:
        staging = folder.staging
        ctx.out_dir = staging
        output = suite.summarize(ctx, preds)
        prov_a = a["provenance"]
        results = {
            "schema_version": SCHEMA_VERSION,
            "evalsuite_version": package_versions().get("evalsuite") or "unknown",
            "provenance": {
                "model_sha256": prov_a.get("model_sha256", ""),
                "data_fingerprint": prov_a.get("data_fingerprint", ""),
                "config_hash": config_hash(resolved),
                "packages": package_versions(),
                "device": "none (stored predictions)",
                "seed": seed,
                "started_at": started,
                "finished_at": _now(),
                "seconds": round(time.perf_counter() - t0, 3),
                "suite_seconds": {"compare": round(time.perf_counter() - t0, 3)},
                "reference": reference_record(b.get("model", {})),
                "compared_runs": {"candidate": str(path_a), "reference": str(path_b)},
            },
            "model": a["model"],
            "data": a["data"],
            "config": resolved,
            "conditions": {k: a["conditions"][k] for k in keys},
            "metrics": {"compare": output.metrics},
            "checks": [],
            "report": {"compare": output.report},
        }
        outcomes = evaluate(results, gates, None)
        decision = Decision(outcomes, record, None, fail_on, _now())
        atomic_write_text(staging / "config.json", json.dumps(resolved, indent=2, default=str) + "\n")
        write_results(results, staging / "results.json")
        write_reports(results, decision, staging)
        folder.commit()
    return RunOutcome(decision.exit_code, out_dir, results, outcomes)
