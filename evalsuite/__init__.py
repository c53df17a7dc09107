"""evalsuite: decide whether an image classifier is fit to ship.

Importing the package switches off every phone-home its dependencies know of, before any of them
is imported (onnxruntime reads ``ORT_DISABLE_TELEMETRY`` when its telemetry starts; its
``disable_telemetry_events()`` call did not stop the lookups; Hugging Face Hub, which timm
imports, reads the ``HF_HUB_*`` switches at import). These are set unconditionally: evalsuite
promises no network at run time (``docs/security.md``), and a test runs the standard suite with
every socket connection refused.
"""

import os as _os

_os.environ["ORT_DISABLE_TELEMETRY"] = "1"
_os.environ["HF_HUB_OFFLINE"] = "1"
_os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
_os.environ["TRANSFORMERS_OFFLINE"] = "1"
