"""Robot families: the rules a task inherits from the kind of robot it drives (docs/method.md#robots-and-tasks).

A family gives its tasks a default control cost and state limit, and the two posture rules of its
termination: how low (or high) the torso may go and how far it may pitch. Everything else of a task's
rules (reward direction, alive bonus, physics settings) is the task's own (``tasks.TaskSpec``).
``FAMILIES`` is the registry: a new family is one entry here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Family:
    """A robot family's rules.

    ctrl_cost:        default control cost per |action|^2 (per step)
    state_limit:      default state limit (``physics`` setting ``state_limit``; None = no such rule)
    pitch_limit:      rad; the episode ends when |torso pitch| >= it
    min_height_ratio: the episode ends when the torso height <= this times its height at the start pose
                      (None: not this rule)
    height_range:     m; the episode ends when the torso height leaves this open interval (None: not this rule)
    has_knee_penalty: whether the knee-limit penalty (``physics`` ``knee_limit_penalty``) applies to it
    """

    name: str
    ctrl_cost: float
    state_limit: float | None
    pitch_limit: float
    min_height_ratio: float | None = None
    height_range: tuple[float, float] | None = None
    has_knee_penalty: bool = False

    def height_out(self, height: np.ndarray, start_height) -> np.ndarray:
        """bool (...): the torso height (...) (m) ends the episode (start_height: m, broadcasting)."""
        out = np.zeros(np.shape(height), dtype=bool)
        if self.min_height_ratio is not None:
            out |= height <= self.min_height_ratio * np.asarray(start_height)
        if self.height_range is not None:
            low, high = self.height_range
            out |= (height <= low) | (height >= high)
        return out

    def tilted(self, pitch: np.ndarray) -> np.ndarray:
        """bool (...): the torso pitch (...) (rad) ends the episode."""
        return np.abs(pitch) >= self.pitch_limit


FAMILIES: dict[str, Family] = {
    # Gymnasium Hopper's healthy ranges (height relative to the start height); the authors' hopper.py the same
    "hopper": Family("hopper", ctrl_cost=1e-3, state_limit=100.0, pitch_limit=0.2, min_height_ratio=0.56,
                     has_knee_penalty=True),
    # the authors' walker2d.py: height in (0.8, 2.0), |pitch| < 1.0
    "biped": Family("biped", ctrl_cost=0.1, state_limit=None, pitch_limit=1.0, height_range=(0.8, 2.0)),
}


def get_family(name: str) -> Family:
    """The family ``name``; ValueError lists the families."""
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}, allowed {list(FAMILIES)}")
    return FAMILIES[name]
