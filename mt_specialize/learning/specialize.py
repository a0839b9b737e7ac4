"""Gradient-guided weight selection (paper §IV-B, Algorithm 1).

For each task i, g_i = gradient of the PPO policy loss on task i's own rollouts (the caller sums
it over one iteration's minibatches, e.g. ``policy.per_task_grads()`` accumulated over the
iteration). For every policy entry j (weights, biases and log-std: the paper's |θ|) the spread of
g_1[j] .. g_N[j] across tasks is recorded; the score is its mean over the last ``window`` (10)
iterations. The fraction ``sp`` of entries with the LARGEST score is split (per-task), the rest,
i.e. the M smallest, stays shared.
"""

from __future__ import annotations

import math
from collections import deque

import torch

__all__ = ["GradientSpread", "select_split_masks", "random_split_masks", "n_split_entries", "count_split"]

_STATISTICS = ("variance", "std")


def n_split_entries(total: int, sp: float) -> int:
    """k = round(sp * total), halves rounded up; ``sp`` must be in [0, 1]."""
    if isinstance(sp, bool) or not isinstance(sp, (int, float)) or not 0.0 <= sp <= 1.0:
        raise ValueError(f"split fraction sp must be a number in [0, 1], got {sp!r}")
    return min(total, int(math.floor(sp * total + 0.5)))


def count_split(masks: dict[str, torch.Tensor]) -> int:
    """Number of True (split) entries over all masks."""
    return int(sum(int(m.sum()) for m in masks.values()))


class GradientSpread:
    """Running per-entry spread of per-task gradients over the last ``window`` iterations.

    ``add(per_task_grads)``: dict name -> (T, *shape) gradients of one iteration. The spread is
    the variance over the task axis (``unbiased=False``) or its square root (``statistic='std'``),
    computed in float64. ``score()``: name -> (*shape) mean spread over the recorded iterations
    (at most ``window``; the oldest is dropped first).
    """

    def __init__(self, window: int = 10, statistic: str = "variance"):
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        if statistic not in _STATISTICS:
            raise ValueError(f"statistic must be one of {_STATISTICS}, got {statistic!r}")
        self.window = window
        self.statistic = statistic
        self._spreads: deque[dict[str, torch.Tensor]] = deque(maxlen=window)

    @property
    def n_recorded(self) -> int:
        """Iterations currently in the window (<= window)."""
        return len(self._spreads)

    def spread(self, per_task_grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """name -> (*shape) float64 spread across tasks of one iteration's gradients."""
        out = {}
        for name, g in per_task_grads.items():
            if g.dim() < 1 or g.shape[0] < 1:
                raise ValueError(f"per-task gradient {name!r} must be (T, *shape), got {tuple(g.shape)}")
            var = g.detach().to(torch.float64).var(dim=0, unbiased=False)
            out[name] = var.sqrt() if self.statistic == "std" else var
        return out

    def add(self, per_task_grads: dict[str, torch.Tensor]) -> None:
        """Record one iteration's per-task gradients (name -> (T, *shape))."""
        if not per_task_grads:
            raise ValueError("per_task_grads is empty")
        s = self.spread(per_task_grads)
        s = {n: s[n] for n in sorted(s)}  # one canonical order, whatever order the gradients come in
        if self._spreads:
            ref = self._spreads[-1]
            if list(ref) != list(s) or any(ref[n].shape != s[n].shape for n in s):
                raise ValueError("per-task gradients changed names/shapes between iterations: "
                                 f"{[(n, tuple(v.shape)) for n, v in s.items()]} vs "
                                 f"{[(n, tuple(v.shape)) for n, v in ref.items()]}")
        self._spreads.append(s)

    def score(self) -> dict[str, torch.Tensor]:
        """name -> (*shape) float64 mean spread over the last ``n_recorded`` iterations."""
        if not self._spreads:
            raise RuntimeError("GradientSpread.score(): no iteration recorded yet")
        names = list(self._spreads[0])
        return {n: torch.stack([s[n] for s in self._spreads]).mean(dim=0) for n in names}

    def reset(self) -> None:
        self._spreads.clear()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only: ``window``, ``statistic`` (index into ('variance','std')), and
        ``spread.{k}.{name}`` for k = 0 (oldest) .. n_recorded-1."""
        out = {"window": torch.tensor(self.window, dtype=torch.int64),
               "statistic": torch.tensor(_STATISTICS.index(self.statistic), dtype=torch.int64),
               "n_recorded": torch.tensor(self.n_recorded, dtype=torch.int64)}
        for k, s in enumerate(self._spreads):
            for n, v in s.items():
                out[f"spread.{k}.{n}"] = v.clone()
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore from :meth:`state_dict`; window and statistic must match this instance."""
        try:
            window, stat, n = (int(state["window"]), int(state["statistic"]), int(state["n_recorded"]))
        except KeyError as e:
            raise ValueError(f"GradientSpread state is missing {e}") from None
        if window != self.window or stat != _STATISTICS.index(self.statistic):
            raise ValueError(f"GradientSpread state has window={window}, statistic="
                             f"{_STATISTICS[stat] if 0 <= stat < 2 else stat}; this instance has "
                             f"window={self.window}, statistic={self.statistic}")
        if not 0 <= n <= window:
            raise ValueError(f"GradientSpread state has n_recorded={n} outside [0, {window}]")
        spreads = [dict() for _ in range(n)]
        for key, v in state.items():
            if not key.startswith("spread."):
                continue
            _, k, name = key.split(".", 2)
            if not 0 <= int(k) < n:
                raise ValueError(f"GradientSpread state key {key!r} beyond n_recorded={n}")
            spreads[int(k)][name] = v.detach().clone().to(torch.float64)
        if n and any(sorted(s) != sorted(spreads[0]) for s in spreads):
            raise ValueError("GradientSpread state: iterations have different parameter names")
        self._spreads = deque([{name: s[name] for name in sorted(s)} for s in spreads], maxlen=self.window)


def select_split_masks(score: dict[str, torch.Tensor], sp: float, count: str = "round") -> dict[str, torch.Tensor]:
    """Split the ``k = round(sp * |θ|)`` entries with the largest score, pooled over ALL entries.

    ``count="floor_nonzero"``: the authors' rule instead (``pposgd_split.py``): the
    ``int(sp * |θ|)`` highest-scoring entries, of which only those with a score > 0 are split.

    ``score``: name -> (*shape) (e.g. ``GradientSpread.score()``), covering every policy entry.
    Returns name -> bool mask of the same shape (True = split). Ties are broken
    deterministically: among equal scores the entry that comes first (dict order of ``score``,
    then row-major within a tensor) is split first. Raises ValueError for sp outside [0, 1] or
    non-finite scores.
    """
    names = list(score)
    flat = torch.cat([score[n].detach().reshape(-1).to(torch.float64) for n in names]) if names else torch.zeros(0)
    if count not in ("round", "floor_nonzero"):
        raise ValueError(f"count must be 'round' or 'floor_nonzero', got {count!r}")
    k = n_split_entries(flat.numel(), sp)
    if count == "floor_nonzero":
        k = min(flat.numel(), int(sp * flat.numel()))
    if not torch.isfinite(flat).all():
        bad = [n for n in names if not torch.isfinite(score[n]).all()]
        raise ValueError(f"non-finite specialization score in {bad}")
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    if k:
        order = torch.sort(flat, descending=True, stable=True).indices[:k]
        if count == "floor_nonzero":
            order = order[flat[order] > 0]
        chosen[order] = True
    return _unflatten(chosen, {n: score[n].shape for n in names})


def random_split_masks(shapes: dict[str, torch.Size], sp: float,
                       generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Random-split baseline: exactly ``round(sp * |θ|)`` entries chosen uniformly over all
    entries (same count as :func:`select_split_masks`). ``shapes``: name -> logical shape."""
    total = sum(math.prod(s) for s in shapes.values())
    k = n_split_entries(total, sp)
    chosen = torch.zeros(total, dtype=torch.bool)
    chosen[torch.randperm(total, generator=generator)[:k]] = True
    return _unflatten(chosen, shapes)


def _unflatten(flat: torch.Tensor, shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    out, i = {}, 0
    for n, s in shapes.items():
        size = math.prod(s)
        out[n] = flat[i:i + size].reshape(s).clone()
        i += size
    return out
