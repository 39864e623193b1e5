"""The run key: a short hash of a run's resolved settings.

Its own module so that the training engine depends on this one function, not on all of
:mod:`vaeflow.config` (an edit there would otherwise look like a change to every run).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def config_hash(settings: Any) -> str:
    """Short sha256 of the canonical JSON form of ``settings``."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
