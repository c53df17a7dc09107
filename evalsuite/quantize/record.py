"""The quantization record of an INT8 model, its QDQ census, and the calibration-overlap check.

``evalsuite quantize`` stores a record under ``extra.quantization`` of the model's
``evalsuite.preprocessing`` metadata (the same JSON object every evalsuite model carries, beside
``extra.calibration`` of a calibrated one): the source model's sha256, the method and formats,
the calibration data (name, fingerprint, n, seed, a hash of the sample ids) and one *pixel
digest* per calibration sample (the first 16 hex digits of the sha256 of the decoded
``H x W x 3`` uint8 image and its shape).

At ``evalsuite run`` (:func:`check_calibration_overlap`, called by ``api.plan_run`` before the
first prediction) the evaluated samples are decoded once and digested the same way: an
evaluated image with the same pixels as a calibration image is calibration data, whatever its
file name or id, so a run on overlapping data is refused (exit 2) unless
``--allow-calibration-overlap`` (then the overlap is logged and recorded in the results' model
info). Digests of decoded pixels rather than ids: two folders may reuse ``cat/001.jpg`` for
different images, and the same image may sit under another name; re-encoded copies (a JPEG
saved again) are not detected.

The record is read from the ONNX file's own ``metadata_props`` (a sidecar ``<model>.json`` may
override preprocessing, but cannot hide the record), and is untrusted input: it is checked for
shape and size before use, and nothing in it is opened or run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from evalsuite.errors import DataError, ModelError
from evalsuite.quantize import RECORD_KEY

log = logging.getLogger(__name__)

#: Hex digits kept of each pixel digest (64 bits: a chance collision among a million calibration
#: samples and a million evaluated ones is about 1e-7).
DIGEST_HEX = 16
#: At most this many digests are read from a record (a record is untrusted input).
MAX_DIGESTS = 1_000_000
_HEX = re.compile(rf"^[0-9a-f]{{{DIGEST_HEX}}}$")
#: ONNX operators that mark a quantized graph (QDQ pairs, and the QOperator format's fused ops).
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
QOPERATOR_PREFIX = "QLinear"


def pixel_digest(image: np.ndarray) -> str:
    """The first :data:`DIGEST_HEX` hex digits of sha256 over an image's shape and uint8 pixels."""
    a = np.ascontiguousarray(image)
    h = hashlib.sha256(("x".join(str(d) for d in a.shape) + "|" + str(a.dtype)).encode())
    h.update(a.data)
    return h.hexdigest()[:DIGEST_HEX]


def sample_digests(dataset: Any, positions: Sequence[int] | np.ndarray | None = None) -> list[str | None]:
    """:func:`pixel_digest` of the decoded image at each position of ``dataset`` (default: all),
    decoded on the shared CPU pool (:func:`evalsuite.parallel.parallel_for`); ``None`` for an
    image that cannot be read (it is never evaluated either)."""
    from evalsuite.parallel import parallel_for

    pos = np.arange(len(dataset), dtype=np.int64) if positions is None else np.asarray(positions, dtype=np.int64)
    out: list[str | None] = [None] * len(pos)

    def one(i: int) -> None:
        try:
            out[i] = pixel_digest(dataset.read_image(int(pos[i])))
        except DataError:
            out[i] = None

    parallel_for(one, len(pos))
    return out


def ids_sha256(ids: Sequence[Any]) -> str:
    """sha256 over the sorted sample ids (each length-prefixed): which samples, not their pixels."""
    h = hashlib.sha256()
    for s in sorted(str(i) for i in ids):
        b = s.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


# ------------------------------------------------------------------------------------ the record
def _file_metadata(model: Any) -> dict[str, Any] | None:
    """evalsuite's metadata JSON as stored in the model file itself (ONNX ``metadata_props``)."""
    from evalsuite.models.metadata import METADATA_KEY

    session = getattr(model, "session", None)
    if session is None or not hasattr(session, "get_modelmeta"):
        return None
    raw = (session.get_modelmeta().custom_metadata_map or {}).get(METADATA_KEY)
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        return None  # the loader already reported unreadable metadata
    return meta if isinstance(meta, dict) else None


def quantization_record(model: Any) -> dict[str, Any] | None:
    """The model's quantization record (checked by :func:`validate_record`), or None.

    Read from the file's own metadata first, so a sidecar cannot hide it; then from the
    effective metadata (``info.extra["metadata_extra"]``, for formats without a session).
    """
    meta = _file_metadata(model)
    record = None
    if meta is not None and isinstance(meta.get("extra"), dict):
        record = meta["extra"].get(RECORD_KEY)
    if record is None:
        record = ((model.info.extra or {}).get("metadata_extra") or {}).get(RECORD_KEY)
    if record is None:
        return None
    return validate_record(record, str(model.info.source))


def validate_record(record: Any, source: str) -> dict[str, Any]:
    """``record`` if it has the shape :mod:`evalsuite.quantize.core` writes, else a one-line ModelError."""
    where = f"{source}: metadata extra.{RECORD_KEY}"
    if not isinstance(record, dict):
        raise ModelError(f"{where} must be an object, got {type(record).__name__}")
    cal = record.get("calibration")
    if not isinstance(cal, dict):
        raise ModelError(f"{where}.calibration must be an object")
    digests = cal.get("sample_digests")
    if not isinstance(digests, list) or len(digests) > MAX_DIGESTS:
        raise ModelError(f"{where}.calibration.sample_digests must be a list of at most {MAX_DIGESTS} digests")
    bad = next((d for d in digests if not (isinstance(d, str) and _HEX.match(d))), None)
    if bad is not None:
        raise ModelError(f"{where}.calibration.sample_digests holds {str(bad)[:40]!r}, not a {DIGEST_HEX}-digit hex digest")
    fp = cal.get("fingerprint")
    if fp is not None and not isinstance(fp, str):
        raise ModelError(f"{where}.calibration.fingerprint must be a string")
    return record


# ----------------------------------------------------------------------------------- the census
def qdq_census(path: Any) -> dict[str, Any]:
    """What ``evalsuite inspect`` shows of a quantized ONNX graph: operator counts and the
    element types of the quantized weights (nothing is run; external data is not loaded)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    counts: dict[str, int] = {}
    for node in proto.graph.node:
        if node.op_type in QDQ_OPS or node.op_type.startswith(QOPERATOR_PREFIX):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    if not counts:
        return {"quantized": False}
    elem = {int(t.data_type) for t in proto.graph.initializer
            if t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT4,
                               onnx.TensorProto.UINT4, onnx.TensorProto.INT16, onnx.TensorProto.UINT16)}
    fmt = "QDQ" if any(op in counts for op in QDQ_OPS) else "QOperator"
    return {
        "quantized": True,
        "format": fmt,
        "ops": dict(sorted(counts.items())),
        "integer_types": sorted(onnx.TensorProto.DataType.Name(e) for e in elem),
    }


def record_summary(record: dict[str, Any]) -> dict[str, Any]:
    """The record without its per-sample digests (what people read: ``inspect``, summaries)."""
    out = {k: v for k, v in record.items() if k != "calibration"}
    cal = record.get("calibration") or {}
    out["calibration"] = {k: v for k, v in cal.items() if k != "sample_digests"}
    out["calibration"]["sample_digests"] = len(cal.get("sample_digests") or [])
    return out


def describe_quantization(path: Any, model: Any = None) -> dict[str, Any] | None:
    """``evalsuite inspect``'s ``quantization`` entry: the QDQ census and the record (digests
    counted, not listed); None for a graph without quantization operators and no record."""
    census = qdq_census(path)
    record = quantization_record(model) if model is not None else None
    if not census.get("quantized") and record is None:
        return None
    census.pop("quantized", None)
    return {**census, "record": None if record is None else record_summary(record)}


# ------------------------------------------------------------------------------ overlap at run
def check_calibration_overlap(model: Any, dataset: Any, *, allow: bool = False) -> dict[str, Any] | None:
    """Refuse evaluation data that overlap the model's calibration samples (see the module docstring).

    Returns None for a model without a quantization record; otherwise the check's record, also
    stored in ``model.info.extra["calibration_overlap"]`` so the results' model info carries it.
    Raises :class:`DataError` (exit 2) on overlap unless ``allow``.
    """
    record = quantization_record(model)
    if record is None:
        return None
    cal = record["calibration"]
    wanted = set(cal["sample_digests"])
    same_data = bool(cal.get("fingerprint")) and cal.get("fingerprint") == dataset.fingerprint
    if same_data:
        overlap = list(range(len(dataset)))
    else:
        digests = sample_digests(dataset) if wanted else []
        overlap = [i for i, d in enumerate(digests) if d is not None and d in wanted]
    result = {
        "calibration_data": cal.get("data"),
        "calibration_fingerprint": cal.get("fingerprint"),
        "calibration_n": cal.get("n"),
        "evaluated": int(len(dataset)),
        "overlapping": int(len(overlap)),
        "method": "same dataset fingerprint" if same_data else "pixel digests of every evaluated image",
        "allowed": bool(allow),
    }
    if overlap:
        first = str(dataset.ids[overlap[0]])
        what = (f"{dataset.name} is the calibration data of {model.info.source}" if same_data else
                f"{len(overlap)} of {len(dataset)} evaluated samples of {dataset.name} have the pixels of calibration "
                f"samples of {model.info.source} (calibrated on {cal.get('data')}; first: {first})")
        if not allow:
            raise DataError(f"{what}; evaluate it on data disjoint from its calibration data, or pass "
                            "--allow-calibration-overlap to measure anyway (recorded in the results)")
        log.warning("%s; measuring anyway (--allow-calibration-overlap): its numbers are not held out", what)
    model.info.extra["calibration_overlap"] = result
    return result
