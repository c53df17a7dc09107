"""Machine description and result writing shared by the benchmark scripts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from evalsuite.machine import describe_machine

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_result(name: str, payload: dict[str, Any], markdown: str | None = None) -> Path:
    """Write ``results/<name>.json`` (and ``.md``) with the machine description and a timestamp."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": describe_machine(), **payload}
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    if markdown is not None:
        m = doc["machine"]
        gpu = f", {m['gpu']}" if m.get("gpu") else ""
        header = (f"Machine: {m['cpu']}, {m['cores']} cores, {m.get('memory_gib')} GiB{gpu}, torch {m.get('torch')}, "
                  f"onnxruntime {m.get('onnxruntime')}")
        (RESULTS_DIR / f"{name}.md").write_text(f"{header}\n\n{markdown}\n")
    return path
