"""Adam for K runs at once (the update's) and one run's Adam in ``torch.optim.Adam``'s format (its checkpoints).

:class:`MultiAdam` steps the tensors of K runs' batched networks (:mod:`mt_specialize.learning.multi`):
each run's slice of each tensor is a tensor of its own in ONE ``torch._fused_adam_`` call (the kernel
of ``torch.optim.Adam(fused=True)``), with its own moments and step count. Two ways, ``ppo.optimizer``:

* ``mixed``: one step per minibatch over every tensor that has a gradient (a per-task tensor once
  its entry is split), as ``torch.optim.Adam`` steps the parameters whose ``.grad`` is set;
* ``per_task``: the paper's authors' optimiser, one Adam per task, the tasks stepping in turn, shared
  entries' values and moments kept in sync (``pposgd_split.py``: ``task_adams``, then the copy of the
  shared entries to every other task after each step). Over split networks the synchronisation needs
  no copying: a shared entry has ONE value and ONE pair of moments, which every task's step updates;
  a split entry of task i lives in row i of its per-task tensor (and of its moments), which only task
  i's step touches. Each task's Adam counts its own steps, and all tasks step once per minibatch, so
  every step of a round uses the same bias-correction count (``begin_round``).

:class:`RunAdam` IS a ``torch.optim.Adam(fused=True)`` over one run's ``policy.parameters() +
value.parameters()``: its ``param_groups``, ``state`` and ``state_dict`` are Adam's (the trainer's
checkpoints hold them), but its state tensors are views of the run's slot of a ``MultiAdam``, which
steps them; the learning rate of the run's next update is its ``param_groups[0]['lr']``.
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["MultiAdam", "RunAdam"]

_ZERO = torch.zeros(())  # float32 0 for torch.where(..., out=)


class RunAdam(torch.optim.Adam):
    """One run's Adam: ``torch.optim.Adam(params, lr, betas, eps, fused=True)`` whose state is held
    (and stepped) by the ``MultiAdam`` it is bound to (module docstring). ``load_state_dict`` loads
    into that slot; ``state_dict`` is Adam's, states in the order they were created."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr=lr, betas=betas, eps=eps, fused=True)
        self.batched: tuple[MultiAdam, int] | None = None  # (the batched Adam holding the state, slot)

    def step(self, closure=None):  # noqa: D401
        raise RuntimeError("a run's Adam steps in its batch: ppo_update.ppo_update")

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        if self.batched is not None:
            adam, k = self.batched
            adam.bind(k, self)


class _Slot:
    """One tensor of a run's parameter list (an entry's shared or per-task half), for K runs."""

    def __init__(self, index: int, entry, per_task: bool):
        self.index, self.entry, self.per_task = index, entry, per_task
        self.param = entry.task if per_task else entry.shared
        self.grad = entry.grad_task if per_task else entry.grad_shared
        self.exp_avg = torch.zeros_like(self.param)
        self.exp_avg_sq = torch.zeros_like(self.param)
        self.step = torch.zeros(entry.n_runs)  # float32 per run, as Adam's 0-dim step tensors
        self.started = [False] * entry.n_runs  # run k has Adam state for this tensor


class MultiAdam:
    """K runs' Adam over batched networks ``nets`` (policy, value), each run's state bound to its
    ``RunAdam`` (``runs[k]``, slot k; module docstring). Per update: ``prepare(active, per_task)``,
    then per minibatch ``step(max_grad_norm)`` (``mixed``) or ``begin_round()`` and ``step_task(i,
    grads)`` for each task i (``per_task``). ``round``: each run's rounds so far."""

    def __init__(self, nets: Sequence, runs: Sequence[RunAdam]):
        self.nets = list(nets)
        self.n_runs = nets[0].n_runs
        if len(runs) != self.n_runs:
            raise ValueError(f"one RunAdam per run ({self.n_runs}) needed, got {len(runs)}")
        self.slots = [_Slot(i, e, per_task) for i, (e, per_task) in
                      enumerate((e, p) for net in self.nets for e in net.entries() for p in (False, True))]
        settings = {(tuple(r.param_groups[0]["betas"]), r.param_groups[0]["eps"]) for r in runs}
        if len(settings) != 1 or any(len(r.param_groups) != 1 for r in runs):
            raise ValueError(f"runs batched together need one Adam (one parameter group, one betas and eps), got "
                             f"{sorted(settings)}")
        (betas, eps), = settings
        self.betas, self.eps = (float(betas[0]), float(betas[1])), float(eps)
        self.runs: list[RunAdam | None] = [None] * self.n_runs
        self.round = [0] * self.n_runs
        self._one = torch.ones(())
        self._plan = None
        for k, run in enumerate(runs):
            self.bind(k, run)

    @torch.no_grad()
    def bind(self, k: int, run: RunAdam) -> None:
        """Slot ``k`` takes ``run``'s state (states in their creation order), which becomes views of the slot."""
        params = run.param_groups[0]["params"]
        if len(params) != len(self.slots) or any(tuple(p.shape) != tuple(s.param.shape[1:])
                                                 for p, s in zip(params, self.slots)):
            raise ValueError("the run's Adam is not over this batch's networks (policy.parameters() + "
                             "value.parameters())")
        index = {id(p): i for i, p in enumerate(params)}
        states = [(index[id(p)], st) for p, st in run.state.items() if "exp_avg" in st]  # creation order
        for s in self.slots:
            s.started[k] = False
            s.step[k] = 0.0
            s.exp_avg[k].zero_()
            s.exp_avg_sq[k].zero_()
        self.runs[k] = run
        run.batched = (self, k)
        run.state.clear()
        for i, st in states:
            s = self.slots[i]
            s.exp_avg[k].copy_(st["exp_avg"])
            s.exp_avg_sq[k].copy_(st["exp_avg_sq"])
            s.step[k] = float(st["step"])
            self._start(s, k)
        self.round[k] = max((int(s.step[k]) for s in self.slots if s.started[k]), default=0)

    def _start(self, s: _Slot, k: int) -> None:
        """Run ``k``'s state of slot ``s`` exists from now on: in its ``RunAdam`` as views of the slot."""
        s.started[k] = True
        run = self.runs[k]
        run.state[run.param_groups[0]["params"][s.index]] = {
            "step": s.step[k:k + 1].view(()), "exp_avg": s.exp_avg[k], "exp_avg_sq": s.exp_avg_sq[k]}

    @torch.no_grad()
    def copy_state_to_split(self, k: int, newly_split: dict[str, torch.Tensor]) -> None:
        """Run ``k``'s newly split entries (``{entry name: bool mask of the entries that became
        per-task}``) inherit the shared entry's Adam moments; a per-task tensor without state yet
        gets the shared tensor's step and zero moments elsewhere. Nothing for an entry whose shared
        tensor has no state yet."""
        halves = {(s.entry.name, s.per_task): s for s in self.slots}
        for name, sel in newly_split.items():  # in the caller's order: states are created in it
            if not bool(sel.any()):
                continue
            shared, task = halves[(name, False)], halves[(name, True)]
            if not shared.started[k]:
                continue
            if not task.started[k]:
                task.step[k] = shared.step[k]
                task.exp_avg[k].zero_()
                task.exp_avg_sq[k].zero_()
                self._start(task, k)
            for moment in ("exp_avg", "exp_avg_sq"):
                t, sh = getattr(task, moment)[k], getattr(shared, moment)[k]
                t.copy_(torch.where(sel, sh.expand_as(t), t))

    # -- steps -------------------------------------------------------------------------------------------
    def _fused(self, lists: dict, lr: float) -> None:
        torch._fused_adam_(lists["params"], lists["grads"], lists["exp_avgs"], lists["exp_avg_sqs"], [],
                           lists["steps"], amsgrad=False, lr=lr, beta1=self.betas[0], beta2=self.betas[1],
                           weight_decay=0.0, eps=self.eps, maximize=False, grad_scale=None, found_inf=None)

    @staticmethod
    def _new_lists() -> dict:
        return {n: [] for n in ("params", "grads", "exp_avgs", "exp_avg_sqs", "steps")}

    def _lr(self, k: int) -> float:
        return float(self.runs[k].param_groups[0]["lr"])

    def prepare(self, active: Sequence[bool], per_task: bool) -> None:
        """Plan the steps of one update of the ``active`` runs (masks, learning rates and the runs
        taking part are fixed during an update): which run's slice of which tensor each step
        updates. States Adam would create at a run's first step of a tensor are created here."""
        if len(active) != self.n_runs:
            raise ValueError(f"one active flag per run ({self.n_runs}) needed, got {len(active)}")
        active = tuple(bool(a) for a in active)
        self._plan = self._plan_per_task(active) if per_task else self._plan_mixed(active)

    def _plan_mixed(self, active: tuple[bool, ...]) -> tuple:
        groups: dict[float, dict] = {}
        norm_lists = [[] for _ in range(self.n_runs)]  # per run, its gradients in parameter order (clipping)
        for k in range(self.n_runs):
            if not active[k]:
                continue
            lists = groups.setdefault(self._lr(k), self._new_lists())
            for s in self.slots:
                if s.per_task and not s.entry.split[k]:
                    continue  # not in the run's loss: no gradient, not stepped
                if not s.started[k]:  # Adam's state of a first step: step 0, zero moments
                    s.step[k] = 0.0
                    self._start(s, k)
                lists["params"].append(s.param[k])
                lists["grads"].append(s.grad[k])
                lists["exp_avgs"].append(s.exp_avg[k])
                lists["exp_avg_sqs"].append(s.exp_avg_sq[k])
                lists["steps"].append(s.step[k:k + 1].view(()))
                norm_lists[k].append(s.grad[k])
        return "mixed", list(groups.items()), norm_lists

    def _plan_per_task(self, active: tuple[bool, ...]) -> tuple:
        """Per task, which halves each run steps: shared where not split, the task's row of the per-task
        tensor where split. States created during the update start here with the run's current round
        (``begin_round`` then advances them with the others, as if created at the advanced count)."""
        halves_of = {(id(s.entry), s.per_task): s for s in self.slots}
        order = [e for net in self.nets for e in net.step_order()]
        tasks = []
        for i in range(self.nets[0].n_tasks):
            groups: dict[float, dict] = {}
            for k in range(self.n_runs):
                if not active[k]:
                    continue
                lists = groups.setdefault(self._lr(k), self._new_lists())
                for e in order:
                    shared, task = halves_of[(id(e), False)], halves_of[(id(e), True)]
                    halves = ([(shared, None)] if not e.split[k] else [(task, i)] if e.full[k]
                              else [(shared, None), (task, i)])
                    for s, row in halves:
                        if not s.started[k]:
                            s.step[k] = float(self.round[k])
                            self._start(s, k)
                        if row is None:
                            lists["params"].append(s.param[k])
                            lists["grads"].append(e.grad_shared[k])
                            lists["exp_avgs"].append(s.exp_avg[k])
                            lists["exp_avg_sqs"].append(s.exp_avg_sq[k])
                        else:
                            lists["params"].append(s.param[k, row])
                            lists["grads"].append(e.grad_row[k])
                            lists["exp_avgs"].append(s.exp_avg[k, row])
                            lists["exp_avg_sqs"].append(s.exp_avg_sq[k, row])
                        lists["steps"].append(s.step[k:k + 1].view(()))
            tasks.append(list(groups.items()))
        round_steps = [s.step[k:k + 1].view(()) for s in self.slots for k in range(self.n_runs)
                       if active[k] and s.started[k]]
        return "per_task", tasks, round_steps, active

    @torch.no_grad()
    def step(self, max_grad_norm: float | None = None) -> None:
        """``mixed``: one Adam step of every run of the prepared update from the gradient buffers the
        backward pass filled; with ``max_grad_norm`` each run's gradients are first scaled as
        ``torch.nn.utils.clip_grad_norm_`` scales one run's."""
        kind, groups, norm_lists = self._plan
        if kind != "mixed":
            raise RuntimeError("step() needs an update prepared with per_task=False")
        if max_grad_norm:
            self._clip(norm_lists, max_grad_norm)
        for lr, lists in groups:
            torch._foreach_add_(lists["steps"], self._one)
            self._fused(lists, lr)

    @staticmethod
    def _clip(norm_lists: list[list[torch.Tensor]], max_norm: float) -> None:
        """``clip_grad_norm_`` per run over that run's gradients (parameter order)."""
        norms = torch._foreach_norm([g for grads in norm_lists for g in grads], 2.0)
        start = 0
        for grads in norm_lists:
            if not grads:
                continue
            total = torch.linalg.vector_norm(torch.stack(norms[start:start + len(grads)]), 2.0)
            start += len(grads)
            torch._foreach_mul_(grads, torch.clamp(float(max_norm) / (total + 1e-6), max=1.0))

    @torch.no_grad()
    def begin_round(self) -> None:
        """``per_task``: a new minibatch; every active run's step counts advance by one."""
        if self._plan is None or self._plan[0] != "per_task":
            raise RuntimeError("begin_round() needs an update prepared with per_task=True")
        _, _, round_steps, active = self._plan
        if round_steps:
            torch._foreach_add_(round_steps, self._one)
        for k in range(self.n_runs):
            if active[k]:
                self.round[k] += 1

    @torch.no_grad()
    def step_task(self, task: int, grads: list[tuple]) -> None:
        """``per_task``: task ``task``'s Adam step of every active run from ``grads`` = ``[(entry,
        gradient (K, *shape))]`` (``train_backward_task``'s): the shared halves take the gradient where
        not split, the task's row of the per-task halves where split."""
        if self._plan is None or self._plan[0] != "per_task":
            raise RuntimeError("step_task() needs an update prepared with per_task=True")
        for e, g in grads:
            if e.any_split:
                torch.where(e.mask, _ZERO, g, out=e.grad_shared)
                torch.where(e.mask, g, _ZERO, out=e.grad_row)
            else:
                e.grad_shared.copy_(g)
        for lr, lists in self._plan[1][task]:
            self._fused(lists, lr)
