"""Image-level metrics of what anonymization changed."""

from __future__ import annotations

import numpy as np
from PIL import Image


def pixel_change(original: Image.Image, anonymized: Image.Image) -> float:
    """Share of pixels whose value changed (any channel), in [0, 1]."""
    if original.size != anonymized.size:
        raise ValueError(f"sizes differ: {original.size} vs {anonymized.size}")
    a = np.asarray(original.convert("RGB"), dtype=np.int16)
    b = np.asarray(anonymized.convert("RGB"), dtype=np.int16)
    changed = np.any(a != b, axis=-1)
    return float(changed.mean()) if changed.size else 0.0
