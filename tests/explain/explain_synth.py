"""Shared small fixtures of the explain tests: synthetic frames and fast model settings."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))

from retention_synth import START, synthetic_events, synthetic_frames, synthetic_store

FAST = {"n_estimators": 200, "learning_rate": 0.1, "early_stopping_rounds": 20}

__all__ = ["FAST", "START", "synthetic_events", "synthetic_frames", "synthetic_store"]
