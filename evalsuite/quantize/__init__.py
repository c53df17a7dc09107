"""INT8 candidates: ``evalsuite quantize`` and what a run knows about a quantized model.

- :mod:`evalsuite.quantize.core` -- :func:`~evalsuite.quantize.core.quantize_model`: onnxruntime's
  static quantization (QDQ, per-channel weights) calibrated on data evalsuite reads and
  preprocesses exactly as ``evalsuite run`` does, written atomically with a quantization record;
- :mod:`evalsuite.quantize.record` -- the record (``extra.quantization`` of the
  ``evalsuite.preprocessing`` metadata), the QDQ node census ``evalsuite inspect`` shows, and the
  check that refuses a run whose evaluation data overlap the calibration samples;
- :mod:`evalsuite.quantize.cli` -- the ``evalsuite quantize`` sub-command.

Nothing heavy is imported here, so ``evalsuite --help`` stays fast (see ``docs/quantize.md``).
"""

from __future__ import annotations

#: Key of the quantization record under the metadata's ``extra`` object.
RECORD_KEY = "quantization"
