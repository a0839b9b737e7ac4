"""The revert rule (``revert_drop_bound``): the authors' ``reward_drop_bound`` in ``pposgd_split.py``.

After each rollout, before its update, the pooled return of the last 100 episodes (this rollout's
included) is compared with the last accepted iteration's. A drop of more than the bound rejects the
iteration: policy, value net and normaliser go back to their values at the last accepted rollout, the
counted samples rewind to that point, and the update is skipped (Adam moments, the return buffer, the
split masks and the score window are kept). Otherwise the iteration is accepted and becomes the new
revert point. ``revert_max_streak`` rejections in a row stop the run (``errors.RevertLoop``): the
restored policy does not get back within the bound, and the run would loop for ever.
"""
from __future__ import annotations

import torch

from .errors import RevertLoop


class RevertRule:
    """The rule and its revert point. ``bound`` None: off (every iteration is accepted, nothing is kept).

    reverts: rejected iterations so far; streak: rejected in a row; accepted_return: the pooled
    return of the last accepted iteration (None before the first, NaN while no episode had finished);
    accepted_samples: the counted samples then; accepted_values: the networks' and normaliser's
    values then (``policy/…``, ``value/…``, ``obs_rms/…``), or None.
    """

    def __init__(self, bound: float | None, max_streak: int):
        self.bound, self.max_streak = bound, max_streak
        self.reverts = 0
        self.streak = 0
        self.accepted_return: float | None = None
        self.accepted_samples = 0
        self.accepted_values: dict[str, torch.Tensor] | None = None

    def judge(self, pooled_return: float, samples: int, policy, value, obs_rms) -> bool:
        """Whether the iteration at ``pooled_return`` (counted ``samples``) is accepted. If so it is the
        new revert point; if not, ``policy``, ``value`` and ``obs_rms`` are back at the revert point and
        the caller rewinds its counted samples to ``accepted_samples`` (and stops if ``stuck``)."""
        if self.bound is None:
            return True
        # comparisons with nan (no episode finished yet) are False: accepted, as the authors' np.mean
        if self.accepted_return is not None and pooled_return < self.accepted_return - self.bound:
            saved = self.accepted_values
            policy.restore_values({k[7:]: v for k, v in saved.items() if k.startswith("policy/")})
            value.restore_values({k[6:]: v for k, v in saved.items() if k.startswith("value/")})
            obs_rms.load_state_dict({k[8:]: v for k, v in saved.items() if k.startswith("obs_rms/")})
            self.reverts += 1
            self.streak += 1
            return False
        self.streak = 0
        self.accepted_return = pooled_return
        self.accepted_samples = samples
        values = {f"policy/{k}": v for k, v in policy.snapshot_values().items()}
        values.update({f"value/{k}": v for k, v in value.snapshot_values().items()})
        values.update({f"obs_rms/{k}": v for k, v in obs_rms.state_dict().items()})
        self.accepted_values = values
        return True

    def state(self) -> dict:
        """The rule's figures under their checkpoint names (``train_state.TrainState``)."""
        return {"reverts": self.reverts, "revert_streak": self.streak, "accepted_return": self.accepted_return,
                "accepted_samples": self.accepted_samples, "accepted_values": self.accepted_values}

    def load(self, reverts: int, revert_streak: int, accepted_return: float | None, accepted_samples: int,
             accepted_values: dict[str, torch.Tensor] | None) -> None:
        """The figures ``state`` gave."""
        self.reverts, self.streak, self.accepted_return = reverts, revert_streak, accepted_return
        self.accepted_samples, self.accepted_values = accepted_samples, accepted_values

    @property
    def stuck(self) -> bool:
        """The rule rejected ``max_streak`` iterations in a row: the run must stop."""
        return self.streak >= self.max_streak

    def loop_error(self, pooled_return: float, samples_real: int) -> RevertLoop:
        """The error a stuck run stops with, naming the figures and what lets such a run go on."""
        return RevertLoop(
            f"the revert rule rejected {self.streak} iterations in a row (pooled return "
            f"{pooled_return:.1f}, last accepted {self.accepted_return:.1f}, revert_drop_bound {self.bound:g}) at "
            f"{samples_real:,} real samples: the restored policy does not get back within the "
            f"bound. Stopped instead of looping (revert_max_streak {self.max_streak}); "
            f"the newest checkpoint is kept. A larger bound or revert_drop_bound: off lets such a run "
            f"go on (as a new run)")
