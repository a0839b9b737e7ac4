"""Adam with a lean ``step`` for the trainer's many small Adam steps (about 30 small tensors each).

:class:`FastAdam` IS a ``torch.optim.Adam(fused=True)``: same hyper-parameters, same per-parameter
state (``step`` as a float32 0-dim tensor, ``exp_avg``, ``exp_avg_sq``), same ``state_dict`` (the
trainer's checkpoints, and ``copy_adam_state_to_split``, see no difference) and the same update
kernel (``torch._fused_adam_``). Only the Python around the kernel is shorter: on CPU
``Adam.step`` spends most of its time outside the kernel (grouping tensors, ``_foreach_add_`` of
the step counters with a Python scalar, which CPU runs as one tensor-conversion per tensor).
Parameters whose ``.grad`` is None are skipped, as ``Adam`` does. Settings the lean path does not
cover (amsgrad, weight decay, maximize, capturable, differentiable, a closure) use ``Adam.step``.
"""
from __future__ import annotations

from typing import Iterable

import torch

__all__ = ["FastAdam", "TaskAlternatingAdam"]


class FastAdam(torch.optim.Adam):
    """``torch.optim.Adam(params, lr, betas, eps, fused=True)`` with a faster ``step`` (same results)."""

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        super().__init__(params, lr=lr, betas=betas, eps=eps, fused=True)
        self._one = torch.ones(())

    def _lean(self, group: dict) -> bool:
        return (group.get("fused") and not group.get("foreach") and not group["amsgrad"]
                and not group["weight_decay"] and not group["maximize"] and not group.get("capturable")
                and not group.get("differentiable") and not group.get("decoupled_weight_decay")
                and not torch.is_tensor(group["lr"]))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D401
        """One Adam step over the parameters that have a gradient (see module docstring)."""
        if closure is not None or not all(self._lean(g) for g in self.param_groups):
            return super().step(closure)
        state = self.state
        plan = []
        for group in self.param_groups:
            params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                st = state[p]
                if not st:  # as Adam._init_group does for fused=True
                    st["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                step = st["step"]
                if p.device.type != "cpu" or step.device.type != "cpu" or step.dtype != torch.float32:
                    return super().step()
                params.append(p)
                grads.append(grad)
                exp_avgs.append(st["exp_avg"])
                exp_avg_sqs.append(st["exp_avg_sq"])
                steps.append(step)
            if params:
                plan.append((group, params, grads, exp_avgs, exp_avg_sqs, steps))
        for group, params, grads, exp_avgs, exp_avg_sqs, steps in plan:
            torch._foreach_add_(steps, self._one)
            beta1, beta2 = group["betas"]
            torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False,
                               lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=0.0,
                               eps=group["eps"], maximize=False, grad_scale=None, found_inf=None)
        return None


class TaskAlternatingAdam(FastAdam):
    """The paper's authors' optimiser: one Adam per task, the tasks stepping in turn, shared entries'
    values and Adam moments kept in sync (``pposgd_split.py``: ``task_adams``, then the copy of the
    shared entries to every other task after each step).

    Over split networks (:mod:`mt_specialize.learning.policy`) the synchronisation needs no copying: a shared
    entry has ONE value and ONE pair of moments (those of its ``*_shared`` tensor), which every
    task's step updates; a split entry of task i lives in row i of its ``*_task`` tensor (and of
    that tensor's moments), which only task i's step touches. So a step of task i is one fused Adam
    update of the shared tensors (gradient zeroed where split) and of row i of the per-task
    tensors (gradient zeroed where shared); the halves no task uses drift but never enter a forward
    pass. Each task's Adam counts its own steps, and all tasks step once per minibatch index, so
    every step of a round uses the same bias-correction count: :meth:`begin_round` advances it.

    Use: ``begin_round()``, then ``step_task(i, grads_i)`` for i = 0..T-1 (``grads_i`` from the
    networks' ``train_backward_task``). The state layout (per-parameter ``step``, ``exp_avg``,
    ``exp_avg_sq``) and ``state_dict`` are those of ``torch.optim.Adam``.
    """

    @torch.no_grad()
    def begin_round(self) -> None:
        """Advance the step count of every parameter's Adam state by one (one step per task)."""
        steps = [st["step"] for st in self.state.values() if "step" in st]
        if steps:
            torch._foreach_add_(steps, self._one)
        self._round = self.round + 1

    @property
    def round(self) -> int:
        """Rounds (minibatch indices) stepped so far: the bias-correction count of each task."""
        if not hasattr(self, "_round"):
            steps = [int(st["step"]) for st in self.state.values() if "step" in st]
            self._round = max(steps, default=0)
        return self._round

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        if hasattr(self, "_round"):
            del self._round  # recomputed from the loaded step counts

    def _state_of(self, param: torch.Tensor) -> dict:
        st = self.state[param]
        if not st:
            st["step"] = torch.tensor(float(self.round), dtype=torch.float32)
            st["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            st["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return st

    @torch.no_grad()
    def step_task(self, task: int, grads: Iterable) -> None:
        """One Adam step of task ``task`` with its gradients ``grads`` (``EntryGrad``: the gradient
        w.r.t. the task's effective value of each entry, the entry's logical shape)."""
        from .policy import _mask_state

        if self.round == 0:
            raise RuntimeError("call begin_round() before step_task()")
        params, gs, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []

        def add(param, grad):
            st = self._state_of(param)
            params.append(param)
            gs.append(grad)
            exp_avgs.append(st["exp_avg"])
            exp_avg_sqs.append(st["exp_avg_sq"])
            steps.append(st["step"])

        def add_row(param, grad):
            st = self._state_of(param)
            params.append(param.data[task])
            gs.append(grad)
            exp_avgs.append(st["exp_avg"][task])
            exp_avg_sqs.append(st["exp_avg_sq"][task])
            steps.append(st["step"])

        for entry in grads:
            split, not_mask = _mask_state(entry.mask)
            if not split:
                add(entry.shared, entry.grad)
            elif not bool(not_mask.any()):
                add_row(entry.task, entry.grad)
            else:
                add(entry.shared, entry.grad.masked_fill(entry.mask, 0.0))
                add_row(entry.task, entry.grad.masked_fill(not_mask, 0.0))
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        torch._fused_adam_(params, gs, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=group["lr"],
                           beta1=beta1, beta2=beta2, weight_decay=0.0, eps=group["eps"], maximize=False,
                           grad_scale=None, found_inf=None)
