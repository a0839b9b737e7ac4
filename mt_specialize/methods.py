"""Training methods: the paper's method and its baselines as registered objects.

A ``Method`` states what it fixes (joint-phase samples, split fraction), what the policy sees and
how the split mask is chosen; ``TrainConfig`` and ``Trainer`` ask it instead of comparing names.
A new variant is one ``register_method(Method(...))``.

The paper's method is ``gradient_guided`` (gradient-guided specialization); ``ours``, its name in the
paper's tables, is accepted wherever a method is named and is what run files and the grid's run
directories record (``Method.paper_name``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# a method's joint phase: the whole budget, none, or chosen by the run (``joint_samples``, default 400k)
JointPhase = Literal["budget", "none", "chosen"]


@dataclass(frozen=True)
class Method:
    """One way to train the tasks (docs/method.md, The algorithm).

    name:            the name in the API, configs and the command line
    summary:         one line for help texts
    joint_phase:     ``budget`` = every sample is joint training; ``none`` = split from the start;
                     ``chosen`` = ``joint_samples`` samples, then the split
    split_fraction:  the fixed split fraction, or None = chosen by the run (default 0.25)
    split_value_net: the value net is split (all entries) by default
    task_id_input:   a one-hot task id is appended to the policy's (and value net's) input
    scores_gradients: the per-task gradient spread is recorded during the joint phase and the most
                     disputed entries are split; otherwise the split needs no score
    random_mask:     the split entries are drawn at random (as many as the score would choose)
    paper_name:      the paper's name, if it differs: accepted as an alias of ``name``, and written in
                     run files (config.yaml, summary.json, split file) and run directory names
    """

    name: str
    summary: str
    joint_phase: JointPhase
    split_fraction: float | None
    split_value_net: bool = False
    task_id_input: bool = False
    scores_gradients: bool = False
    random_mask: bool = False
    paper_name: str | None = None

    @property
    def file_name(self) -> str:
        """The name run files and run directories record: the paper's name, else ``name``."""
        return self.paper_name or self.name

    @property
    def chooses_split(self) -> bool:
        """The run chooses ``joint_samples`` and ``split_fraction`` (part of the run's name: ``jt``, ``sp``)."""
        return self.joint_phase == "chosen" and self.split_fraction is None


METHODS: dict[str, Method] = {}  # by name (the paper's names are not keys: see ``method_names``)


def _find(name: str) -> Method | None:
    for method in METHODS.values():
        if name in (method.name, method.paper_name):
            return method
    return None


def register_method(method: Method) -> Method:
    """Make ``method`` available by its name (and paper name); a name already taken is an error."""
    for name in filter(None, (method.name, method.paper_name)):
        if _find(name) is not None:
            raise ValueError(f"a method named {name!r} is already registered")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The registered method called ``name`` or whose paper name is ``name``; ValueError lists the
    allowed names."""
    method = _find(name) if isinstance(name, str) else None
    if method is None:
        raise ValueError(f"unknown method {name!r}; allowed methods: {method_names()}")
    return method


def method_names() -> list[str]:
    """Every name a method may be given by: each method's name, then its paper name if it has one."""
    return [n for m in METHODS.values() for n in (m.name, m.paper_name) if n]


register_method(Method("gradient_guided", "joint phase, then split the entries the tasks' gradients dispute "
                       "most (gradient-guided specialization)",
                       joint_phase="chosen", split_fraction=None, scores_gradients=True, paper_name="ours"))
register_method(Method("joint", "one shared policy for all tasks, never split",
                       joint_phase="budget", split_fraction=0.0))
register_method(Method("separate", "every policy and value entry per task from the start",
                       joint_phase="none", split_fraction=1.0, split_value_net=True))
register_method(Method("random", "joint phase, then split a random set of entries of the same size",
                       joint_phase="chosen", split_fraction=None, random_mask=True))
register_method(Method("append", "one shared policy that sees a one-hot task id",
                       joint_phase="budget", split_fraction=0.0, task_id_input=True))
