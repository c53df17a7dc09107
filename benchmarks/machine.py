"""Machine description and result writing shared by the benchmark scripts."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def describe_machine() -> dict[str, Any]:
    """CPU model, core count, memory, torch/onnxruntime versions and GPU (when present)."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


def write_result(name: str, payload: dict[str, Any], markdown: str | None = None) -> Path:
    """Write ``results/<name>.json`` (and ``.md``) with the machine description and a timestamp."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": describe_machine(), **payload}
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    if markdown is not None:
        m = doc["machine"]
        header = f"Machine: {m['cpu']}, {m['cores']} cores, {m.get('memory_gib')} GiB, torch {m.get('torch')}, onnxruntime {m.get('onnxruntime')}"
        (RESULTS_DIR / f"{name}.md").write_text(f"{header}\n\n{markdown}\n")
    return path
