"""Training methods: the paper's method and its baselines as registered objects.

A ``Method`` states what it fixes (joint-phase samples, split fraction), what the policy sees and
how the split mask is chosen; ``TrainConfig`` and ``Trainer`` ask it instead of comparing names.
A new variant is one ``register_method(Method(...))``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# a method's joint phase: the whole budget, none, or chosen by the run (``jt``, default 400k)
JointPhase = Literal["budget", "none", "chosen"]


@dataclass(frozen=True)
class Method:
    """One way to train the tasks (SPEC §5).

    name:            the name in configs and run directories
    summary:         one line for help texts
    joint_phase:     ``budget`` = every sample is joint training; ``none`` = split from the start;
                     ``chosen`` = ``jt`` samples, then the split
    split_fraction:  the fixed ``sp``, or None = chosen by the run (default 0.25)
    split_value_net: the value net is split (all entries) by default
    task_id_input:   a one-hot task id is appended to the policy's (and value net's) input
    scores_gradients: the per-task gradient spread is recorded during the joint phase and the most
                     disputed entries are split; otherwise the split needs no score
    random_mask:     the split entries are drawn at random (as many as the score would choose)
    """

    name: str
    summary: str
    joint_phase: JointPhase
    split_fraction: float | None
    split_value_net: bool = False
    task_id_input: bool = False
    scores_gradients: bool = False
    random_mask: bool = False

    @property
    def chooses_split(self) -> bool:
        """The run chooses ``jt`` and ``sp`` (they are part of the run's name)."""
        return self.joint_phase == "chosen" and self.split_fraction is None


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Make ``method`` available by its name; a second method of the same name is an error."""
    if method.name in METHODS:
        raise ValueError(f"a method named {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The registered method ``name``; ValueError lists the allowed names."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; allowed methods: {list(METHODS)}")
    return METHODS[name]


register_method(Method("ours", "joint phase, then split the entries the tasks' gradients dispute most",
                       joint_phase="chosen", split_fraction=None, scores_gradients=True))
register_method(Method("joint", "one shared policy for all tasks, never split",
                       joint_phase="budget", split_fraction=0.0))
register_method(Method("separate", "every policy and value entry per task from the start",
                       joint_phase="none", split_fraction=1.0, split_value_net=True))
register_method(Method("random", "joint phase, then split a random set of entries of the same size",
                       joint_phase="chosen", split_fraction=None, random_mask=True))
register_method(Method("append", "one shared policy that sees a one-hot task id",
                       joint_phase="budget", split_fraction=0.0, task_id_input=True))
