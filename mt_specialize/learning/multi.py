"""K independent runs' networks, PPO update and Adam in one batched computation (a leading run axis).

Shapes: ``K`` runs, ``T`` tasks, ``N`` samples per task in an iteration, ``B`` in a minibatch, ``A``
action dim. Every tensor of :mod:`mt_specialize.learning.policy` gets a leading run axis: an entry's
shared values ``(K, *shape)``, its per-task copies ``(K, T, *shape)``, its split mask ``(K, *shape)``;
Adam's moments have the shape of the tensor they belong to and one step count per run ``(K,)``.
Runs share nothing but the arithmetic: each has its own masks, Adam moments and step counts,
minibatch order (its own NumPy generator), learning rate, clip range and per-task gradient tracking.

Exactness. Every run computes what :func:`mt_specialize.learning.ppo_update.ppo_update` computes for it
alone, bit for bit (``test/test_multi.py``): each product is the product the run computes alone, as one
batch element of a ``baddbmm``/``bmm`` over runs (x tasks); where MKL rounds a batched product
differently (thin outputs such as the value head's), :class:`VerifiedProducts` finds out on first use
and computes that product run by run. Every reduction runs over the same elements in the same order.
Where a run's own path sums a layer's weight gradient over all tasks' samples at once (nothing split,
no per-task gradients recorded) but another run of the batch needs the per-task form, both forms are
computed and each run takes its own, so a run's numbers do not depend on which runs share its batch.
Adam steps each run's slice of each tensor as a tensor of its own in one fused call (per-run step counts).
Single-threaded torch only: with more intra-op threads MKL rounds some products differently, a single
run's as well.

Use: build ``MultiGaussianPolicy``/``MultiValue`` and load each run's single-run modules into its slot
(``load_run``), ``MultiAdam`` (``optimizer: mixed``) or ``MultiTaskAlternatingAdam`` (``per_task``)
likewise, stack the runs' ``Batch``es (``RunsBatch.stack``), call :func:`multi_ppo_update`, and write a
run back into single-run modules (``store_run``) to checkpoint it with the single-run code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Sequence

import numpy as np
import torch

from .batch import Batch, gather_rows
from .optim import FastAdam, TaskAlternatingAdam
from .policy import SplitGaussianPolicy, SplitValue
from .ppo import PPOConfig, value_loss_with_grad
from .ppo_update import UpdateStats

__all__ = ["MultiEntry", "VerifiedProducts", "MultiSplitMLP", "MultiGaussianPolicy", "MultiValue", "MultiAdam",
           "MultiTaskAlternatingAdam", "RunsBatch", "multi_ppo_update", "runs_from_single", "runs_to_single"]

_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))
_ZERO = torch.zeros(())  # float32 0 for torch.where(..., out=)


class MultiEntry:
    """One logical entry (a layer's weight or bias, or the log-std) of K runs.

    ``shared (K, *shape)``, ``task (K, T, *shape)`` float32 values and ``mask (K, *shape)`` bool
    (True = per-task), as :class:`mt_specialize.learning.policy.SplitLinear` holds them for one run.
    Gradient buffers ``grad_shared``/``grad_task`` (same shapes) are written by the backward passes
    and read by the optimiser; ``task_grads (K, T, *shape)`` accumulates the per-task gradients of
    the runs that record them. Call :meth:`refresh` after writing ``mask``.
    """

    def __init__(self, name: str, n_runs: int, n_tasks: int, shape: Sequence[int]):
        self.name, self.shape = name, tuple(int(s) for s in shape)
        self.n_runs, self.n_tasks = n_runs, n_tasks
        self.shared = torch.zeros((n_runs, *self.shape))
        self.task = torch.zeros((n_runs, n_tasks, *self.shape))
        self.mask = torch.zeros((n_runs, *self.shape), dtype=torch.bool)
        self.grad_shared = torch.zeros_like(self.shared)
        self.grad_task = torch.zeros_like(self.task)
        self.grad_row = torch.zeros_like(self.shared)  # one task's per-task gradient (per-task optimiser)
        self.task_grads: torch.Tensor | None = None
        # per run: the per-task tensor has had a gradient (stays so), as ``.grad`` not None in one run
        self.task_has_grad = [False] * n_runs
        self.refresh()

    def refresh(self) -> None:
        """Recompute the per-run mask flags (after the masks changed)."""
        flat = self.mask.reshape(self.n_runs, -1)
        self.split = tuple(bool(v) for v in flat.any(1))
        self.full = tuple(bool(v) for v in flat.all(1))
        self.any_split = any(self.split)
        self.mask_b = self.mask.unsqueeze(1)  # (K, 1, *shape): broadcasts over tasks
        self.task_has_grad = [a or b for a, b in zip(self.task_has_grad, self.split)]

    def effective(self) -> torch.Tensor:
        """(K, T, *shape) the values each run's tasks use: ``where(mask, task, shared)``."""
        return torch.where(self.mask_b, self.task, self.shared.unsqueeze(1))

    def task_value(self, task: int) -> torch.Tensor:
        """(K, *shape) the values task ``task`` of each run uses."""
        if not self.any_split:
            return self.shared
        return torch.where(self.mask, self.task[:, task], self.shared)

    def set_per_task_grads(self, grad: torch.Tensor, track: Sequence[bool], flat: torch.Tensor | None = None,
                           flat_runs: torch.Tensor | None = None) -> None:
        """Gradient buffers from ``grad (K, T, *shape)``, each task's gradient w.r.t. its effective
        value: shared entries get the sum over tasks, split ones their task's (as ``.grad`` of one
        run's ``_set_split_grads``). ``flat (K, *shape)`` with bool ``flat_runs (K,)``: for those runs
        the shared gradient is ``flat`` (their single path's sum over all tasks' samples at once).
        Runs with ``track`` True accumulate ``grad`` into ``task_grads``."""
        if any(track):
            if self.task_grads is None:
                self.task_grads = torch.zeros_like(self.task)
            if all(track):
                self.task_grads.add_(grad)
            else:
                rows = [k for k, t in enumerate(track) if t]
                self.task_grads[rows] += grad[rows]
        if self.any_split:
            torch.sum(grad.masked_fill(self.mask_b, 0.0), 1, out=self.grad_shared)
        else:
            torch.sum(grad, 1, out=self.grad_shared)
        if flat is not None:
            torch.where(flat_runs.view(-1, *(1,) * len(self.shape)), flat, self.grad_shared, out=self.grad_shared)
        if any(self.task_has_grad):
            torch.where(self.mask_b, grad, _ZERO, out=self.grad_task)

    def set_flat_grad(self, grad: torch.Tensor) -> None:
        """Gradient buffers when no run splits this entry or records per-task gradients: ``grad (K,
        *shape)`` summed over all tasks' samples is the shared gradient."""
        self.grad_shared.copy_(grad)
        if any(self.task_has_grad):
            self.grad_task.zero_()

    def load(self, k: int, shared: torch.Tensor, task: torch.Tensor, mask: torch.Tensor, task_has_grad: bool) -> None:
        """Slot ``k`` from one run's tensors ``shared (*shape)``, ``task (T, *shape)``, ``mask``."""
        with torch.no_grad():
            self.shared[k].copy_(shared)
            self.task[k].copy_(task)
            self.mask[k].copy_(mask)
        self.task_has_grad[k] = bool(task_has_grad)
        self.refresh()


class VerifiedProducts:
    """Batched matrix products that reproduce one run's own products bit for bit, or are not used.

    MKL picks its kernel by shape, and for some shapes (thin outputs such as the value head's
    ``64 -> 1``, the per-task optimiser's ``(B,) @ (B, 6)``, at some row counts ``64 -> 6``) a product
    batched over runs is rounded differently from the same product of one run alone. At each call
    site and shape (and pattern of the runs' split states), the batched product and each run's own
    product (the very torch call of the single-run path) are both computed and compared until the
    batched one has reproduced ``min_values`` output values exactly: from then on the site computes
    the batched product only; at the first difference it computes the runs one by one for good. A
    kernel that sums in another order differs on a sizeable share of outputs of real data, so
    thousands of equal values settle a shape (a handful does not: 6 values agreed by chance in 6 %
    of the calls of the product above).
    """

    def __init__(self, min_values: int = 4096):
        self.min_values = int(min_values)
        self.exact: dict[tuple, bool] = {}
        self._agreed: dict[tuple, int] = {}  # values reproduced so far at sites not yet decided

    def __call__(self, key: tuple, batched, per_run) -> torch.Tensor:
        """``batched()`` or ``per_run()`` (same shape; the per-run results stacked) for call site ``key``."""
        exact = self.exact.get(key)
        if exact is None:
            reference = per_run()
            if not torch.equal(batched(), reference):
                self.exact[key] = False
                self._agreed.pop(key, None)
            else:
                agreed = self._agreed.get(key, 0) + reference.numel()
                if agreed >= self.min_values:
                    self.exact[key] = True
                    self._agreed.pop(key, None)
                else:
                    self._agreed[key] = agreed
            return reference
        return batched() if exact else per_run()

    @property
    def per_run_sites(self) -> list[tuple]:
        """The call sites (and shapes) computed run by run."""
        return [k for k, v in self.exact.items() if not v]


def _single_weights(e: MultiEntry, k: int) -> torch.Tensor:
    """Run ``k``'s training values of entry ``e`` as its own path builds them: ``shared (*shape)``
    when it splits nothing, else ``(T, *shape) where(mask, task, shared)``."""
    if not e.split[k]:
        return e.shared[k]
    return torch.where(e.mask[k], e.task[k], e.shared[k])


class MultiSplitMLP:
    """K runs x :class:`mt_specialize.learning.policy.SplitMLP` (tanh hidden layers, linear output).
    Entries ``{prefix}{i}.weight (in, out)``, ``{prefix}{i}.bias (out,)``."""

    def __init__(self, n_runs: int, n_tasks: int, dims: Sequence[int], prefix: str,
                 products: VerifiedProducts | None = None):
        self.n_runs, self.n_tasks = n_runs, n_tasks
        self.layers = [(MultiEntry(f"{prefix}{i}.weight", n_runs, n_tasks, (dims[i], dims[i + 1])),
                        MultiEntry(f"{prefix}{i}.bias", n_runs, n_tasks, (dims[i + 1],)))
                       for i in range(len(dims) - 1)]
        self.prefix = prefix
        self.products = products if products is not None else VerifiedProducts()

    def entries(self) -> list[MultiEntry]:
        return [e for layer in self.layers for e in layer]

    def _site(self, op: str, i: int, h: torch.Tensor) -> tuple:
        we, be = self.layers[i]
        return (self.prefix, op, i, h.shape, h.stride(), we.split, be.split)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """``x (K, T, B, in) -> (K, T, B, out)`` and the cache :meth:`backward` needs. A layer some
        run splits is one ``baddbmm`` over runs x tasks with each task's effective weights, a layer
        nothing is split in one ``baddbmm`` over runs of ``(T*B, in) @ (in, out)``."""
        if x.dim() != 4 or x.shape[0] != self.n_runs or x.shape[1] != self.n_tasks \
                or x.shape[3] != self.layers[0][0].shape[0]:
            raise ValueError(f"expected input (K={self.n_runs}, T={self.n_tasks}, B, in="
                             f"{self.layers[0][0].shape[0]}), got {tuple(x.shape)}")
        K, T, B = x.shape[:3]
        last = len(self.layers) - 1
        hs, weights = [x], []
        h = x
        for i, (we, be) in enumerate(self.layers):
            n_in, n_out = we.shape
            w = we.effective() if we.any_split else None
            if we.any_split or be.any_split:
                w_all = w if w is not None else we.shared.unsqueeze(1).expand(K, T, n_in, n_out)
                batched = lambda h=h, w_all=w_all, be=be: torch.baddbmm(  # noqa: E731
                    be.effective().view(K * T, 1, n_out), h.view(K * T, B, n_in),
                    w_all.reshape(K * T, n_in, n_out)).view(K, T, B, n_out)
            else:
                batched = lambda h=h, we=we, be=be: torch.baddbmm(  # noqa: E731
                    be.shared.unsqueeze(1), h.reshape(K, T * B, n_in), we.shared).view(K, T, B, n_out)
            z = self.products(self._site("forward", i, h), batched,
                              lambda h=h, i=i: torch.stack([self._single_forward(k, i, h[k]) for k in range(K)]))
            weights.append(w)
            if i < last:
                zn = z.numpy()
                np.tanh(zn, out=zn)  # NumPy's float32 tanh, in place (policy.fast_tanh)
                h = z
                hs.append(h)
        return z, (hs, weights)

    def _single_forward(self, k: int, i: int, h: torch.Tensor) -> torch.Tensor:
        """Layer ``i`` of run ``k`` on its ``h (T, B, in)``: ``SplitMLP.train_forward``'s own call."""
        we, be = self.layers[i]
        T, B = h.shape[:2]
        w, b = _single_weights(we, k), _single_weights(be, k)
        if we.split[k]:
            return torch.baddbmm((b if be.split[k] else b.expand(T, -1)).unsqueeze(1), h, w)
        if be.split[k]:
            return torch.baddbmm(b.unsqueeze(1), h, w.expand(T, *w.shape))
        return torch.addmm(b, h.reshape(T * B, -1), w).view(T, B, -1)

    @torch.no_grad()
    def backward(self, cache: tuple, grad_out: torch.Tensor, track: Sequence[bool]) -> None:
        """Backward of :meth:`forward` for d(loss)/d(out) = ``grad_out (K, T, B, out)``: fills every
        entry's gradient buffers; runs with ``track`` accumulate per-task gradients."""
        hs, weights = cache
        K, T, B = grad_out.shape[:3]
        g = grad_out
        products = self.products
        for i in range(len(self.layers) - 1, -1, -1):
            (we, be), h, w = self.layers[i], hs[i], weights[i]
            n_in, n_out = we.shape
            per_task = [we.split[k] or be.split[k] or track[k] for k in range(K)]
            flat_w = flat_b = flat_runs = None
            if not all(per_task):  # these runs' own path: one product over all tasks' samples
                g2 = g.reshape(K, T * B, n_out)
                h2 = h.reshape(K, T * B, n_in)
                flat_w = products(self._site("grad_flat", i, h), lambda h2=h2, g2=g2: torch.bmm(h2.transpose(1, 2), g2),
                                  lambda h2=h2, g2=g2: torch.stack([torch.mm(h2[k].t(), g2[k]) for k in range(K)]))
                flat_b = g2.sum(1)
            if any(per_task):
                gw = products(
                    self._site("grad_task", i, h),
                    lambda h=h, g=g: torch.bmm(h.view(K * T, B, n_in).transpose(1, 2),
                                               g.view(K * T, B, n_out)).view(K, T, n_in, n_out),
                    lambda h=h, g=g: torch.stack([torch.bmm(h[k].transpose(1, 2), g[k]) for k in range(K)]))
                gb = g.sum(2)
                if flat_w is not None:
                    flat_runs = torch.tensor([not p for p in per_task])
                we.set_per_task_grads(gw, track, flat_w, flat_runs)
                be.set_per_task_grads(gb, track, flat_b, flat_runs)
            else:
                we.set_flat_grad(flat_w)
                be.set_flat_grad(flat_b)
            if i > 0:
                if w is not None:
                    batched = lambda g=g, w=w: torch.bmm(g.view(K * T, B, n_out),  # noqa: E731
                                                         w.view(K * T, n_in, n_out).transpose(1, 2)).view(K, T, B, n_in)
                else:
                    batched = lambda g=g, we=we: torch.bmm(g.reshape(K, T * B, n_out),  # noqa: E731
                                                           we.shared.transpose(1, 2)).view(K, T, B, n_in)
                dh = products(self._site("grad_input", i, g), batched,
                              lambda g=g, i=i: torch.stack([self._single_input_grad(k, i, g[k]) for k in range(K)]))
                g = torch.ops.aten.tanh_backward(dh, h)

    def _single_input_grad(self, k: int, i: int, g: torch.Tensor) -> torch.Tensor:
        """d(loss)/d(input) of layer ``i`` of run ``k`` for its ``g (T, B, out)``, as its own path."""
        we = self.layers[i][0]
        T, B = g.shape[:2]
        if we.split[k]:
            return torch.bmm(g, _single_weights(we, k).transpose(1, 2))
        return torch.mm(g.reshape(T * B, -1), we.shared[k].t()).view(T, B, -1)

    @torch.no_grad()
    def forward_task(self, x: torch.Tensor, task: int) -> tuple[torch.Tensor, tuple]:
        """:meth:`forward` for ONE task's samples of every run: ``x (K, B, in) -> (K, B, out)``."""
        if x.dim() != 3 or x.shape[0] != self.n_runs or x.shape[2] != self.layers[0][0].shape[0]:
            raise ValueError(f"expected input (K={self.n_runs}, B, in={self.layers[0][0].shape[0]}), "
                             f"got {tuple(x.shape)}")
        if not 0 <= task < self.n_tasks:
            raise ValueError(f"task index {task} outside [0, {self.n_tasks})")
        K = self.n_runs
        last = len(self.layers) - 1
        hs, weights = [x], []
        h = x
        for i, (we, be) in enumerate(self.layers):
            w, b = we.task_value(task), be.task_value(task)
            z = self.products(self._site("forward_task", i, h),
                              lambda h=h, w=w, b=b: torch.baddbmm(b.unsqueeze(1), h, w),
                              lambda h=h, w=w, b=b: torch.stack([torch.addmm(b[k], h[k], w[k]) for k in range(K)]))
            weights.append(w)
            if i < last:
                zn = z.numpy()
                np.tanh(zn, out=zn)
                h = z
                hs.append(h)
        return z, (hs, weights, task)

    @torch.no_grad()
    def backward_task(self, cache: tuple, grad_out: torch.Tensor,
                      track: Sequence[bool]) -> list[tuple[MultiEntry, torch.Tensor]]:
        """Backward of :meth:`forward_task`: ``[(entry, gradient (K, *shape))]`` in the order of one
        run's ``train_backward_task``; runs with ``track`` accumulate into row ``task``."""
        hs, weights, task = cache
        K = self.n_runs
        out = []
        g = grad_out
        for i in range(len(self.layers) - 1, -1, -1):
            we, be = self.layers[i]
            h = hs[i]
            gw = self.products(self._site("grad_task1", i, h), lambda h=h, g=g: torch.bmm(h.transpose(1, 2), g),
                               lambda h=h, g=g: torch.stack([torch.mm(h[k].t(), g[k]) for k in range(K)]))
            gb = g.sum(1)
            out += [(we, gw), (be, gb)]
            _track_row(we, task, gw, track)
            _track_row(be, task, gb, track)
            if i > 0:
                w = weights[i]
                dh = self.products(self._site("grad_input1", i, g), lambda g=g, w=w: torch.bmm(g, w.transpose(1, 2)),
                                   lambda g=g, w=w: torch.stack([torch.mm(g[k], w[k].t()) for k in range(K)]))
                g = torch.ops.aten.tanh_backward(dh, h)
        return out


def _track_row(entry: MultiEntry, task: int, grad: torch.Tensor, track: Sequence[bool]) -> None:
    """Add ``grad (K, *shape)`` to row ``task`` of the tracking runs' per-task gradients."""
    if not any(track):
        return
    if entry.task_grads is None:
        entry.task_grads = torch.zeros_like(entry.task)
    rows = [k for k, t in enumerate(track) if t]
    if len(rows) == entry.n_runs:
        entry.task_grads[:, task] += grad
    else:
        entry.task_grads[rows, task] += grad[rows]


class _MultiNet:
    """Entries, run slots and per-task-gradient bookkeeping common to the policy and value net."""

    n_runs: int
    n_tasks: int

    def entries(self) -> list[MultiEntry]:
        raise NotImplementedError

    def _check_single(self, net) -> None:
        shapes = {e.name: e.shape for e in self.entries()}
        theirs = {n: tuple(s) for n, s in net.param_shapes().items()}
        if theirs != shapes or net.n_tasks != self.n_tasks:
            raise ValueError(f"a run's network has tasks {net.n_tasks} and entries {theirs}; this batch holds "
                             f"tasks {self.n_tasks} and entries {shapes}: runs batched together need one shape")

    def load_run(self, k: int, net) -> None:
        """Slot ``k`` takes one run's network (its shared and per-task values and its masks)."""
        if not 0 <= k < self.n_runs:
            raise ValueError(f"run slot {k} outside [0, {self.n_runs})")
        self._check_single(net)
        single = net._named_entries()
        for e in self.entries():
            shared, task, mask_name = net._entry_tensors(*single[e.name])
            e.load(k, shared.detach(), task.detach(), getattr(single[e.name][0], mask_name), task.grad is not None)

    @torch.no_grad()
    def store_run(self, k: int, net) -> None:
        """Write slot ``k`` into one run's network (values and masks), e.g. to checkpoint it."""
        self._check_single(net)
        single = net._named_entries()
        for e in self.entries():
            owner = single[e.name][0]
            shared, task, mask_name = net._entry_tensors(*single[e.name])
            shared.copy_(e.shared[k])
            task.copy_(e.task[k])
            getattr(owner, mask_name).copy_(e.mask[k])

    def split_masks(self, k: int) -> dict[str, torch.Tensor]:
        """Run ``k``'s split masks (copies), keyed as ``SplitGaussianPolicy.split_masks``."""
        return {e.name: e.mask[k].clone() for e in self.entries()}

    @torch.no_grad()
    def set_split_masks(self, k: int, masks: dict[str, torch.Tensor], optimizer: "MultiAdam | None" = None) -> None:
        """Run ``k``'s ``set_split_masks`` (same rules: newly split per-task copies start from the shared
        value, entries shared again take the tasks' mean; with ``optimizer`` the newly split entries
        inherit the shared entry's Adam moments)."""
        entries = {e.name: e for e in self.entries()}
        missing, unknown = sorted(set(entries) - set(masks)), sorted(set(masks) - set(entries))
        if missing or unknown:
            raise ValueError(f"split masks: missing names {missing}, unknown names {unknown}")
        for n, m in masks.items():
            if not isinstance(m, torch.Tensor) or m.dtype != torch.bool or tuple(m.shape) != entries[n].shape:
                raise ValueError(f"split mask {n!r} must be a torch.bool tensor of shape {entries[n].shape}, got "
                                 f"{getattr(m, 'dtype', type(m))} {tuple(getattr(m, 'shape', ()))}")
        newly = {}
        for n, m in masks.items():
            e = entries[n]
            old = e.mask[k]
            became_split, became_shared = m & ~old, old & ~m
            e.task[k].copy_(torch.where(became_split, e.shared[k].expand_as(e.task[k]), e.task[k]))
            e.shared[k].copy_(torch.where(became_shared, e.task[k].mean(dim=0), e.shared[k]))
            old.copy_(m)
            e.refresh()
            newly[n] = became_split
        if optimizer is not None:
            optimizer.copy_state_to_split(k, self, newly)

    def set_tracking(self, track: Sequence[bool]) -> None:
        """Which runs record per-task gradients (``track_per_task_grads`` of each run)."""
        if len(track) != self.n_runs:
            raise ValueError(f"tracking needs one flag per run ({self.n_runs}), got {len(track)}")
        self.track = [bool(t) for t in track]

    def zero_per_task_grads(self) -> None:
        for e in self.entries():
            e.task_grads = None

    def per_task_grads(self, k: int) -> dict[str, torch.Tensor]:
        """Run ``k``'s ``per_task_grads()``: name -> (T, *shape), summed since the last zeroing."""
        out = {}
        for e in self.entries():
            if e.task_grads is None:
                raise RuntimeError(f"no per-task gradient recorded for {e.name!r}")
            out[e.name] = e.task_grads[k].clone()
        return out

    def snapshot_values(self, k: int) -> dict[str, torch.Tensor]:
        """Run ``k``'s ``snapshot_values()``: ``{name}/shared`` and ``{name}/task`` (effective) copies."""
        out = {}
        for e in self.entries():
            out[f"{e.name}/shared"] = e.shared[k].clone()
            out[f"{e.name}/task"] = torch.where(e.mask[k], e.task[k], e.shared[k]).clone()
        return out

    @torch.no_grad()
    def restore_values(self, k: int, snapshot: dict[str, torch.Tensor]) -> None:
        """Run ``k``'s ``restore_values(snapshot)``; its masks stay as they are."""
        for e in self.entries():
            e.shared[k].copy_(snapshot[f"{e.name}/shared"])
            e.task[k].copy_(snapshot[f"{e.name}/task"])


class MultiGaussianPolicy(_MultiNet):
    """K runs x :class:`SplitGaussianPolicy`: mean MLP and state-independent log-std, per-run masks."""

    def __init__(self, n_runs: int, n_tasks: int, obs_dim: int, act_dim: int, hidden: Sequence[int] = (64, 64, 64)):
        if n_runs < 1 or n_tasks < 1:
            raise ValueError(f"n_runs and n_tasks must be >= 1, got {n_runs}, {n_tasks}")
        self.n_runs, self.n_tasks, self.obs_dim, self.act_dim = n_runs, n_tasks, obs_dim, act_dim
        self.products = VerifiedProducts()
        self.mean = MultiSplitMLP(n_runs, n_tasks, [obs_dim, *hidden, act_dim], "mean.", self.products)
        self.log_std = MultiEntry("log_std", n_runs, n_tasks, (act_dim,))
        self.track = [True] * n_runs

    @classmethod
    def from_runs(cls, policies: Sequence[SplitGaussianPolicy]) -> "MultiGaussianPolicy":
        """The runs' policies stacked (slot k = ``policies[k]``); they must have one shape."""
        first = policies[0]
        hidden = [layer.out_dim for layer in first.mean.layers[:-1]]
        multi = cls(len(policies), first.n_tasks, first.obs_dim, first.act_dim, hidden)
        for k, p in enumerate(policies):
            multi.load_run(k, p)
        multi.track = [bool(p.mean.layers[0].track_per_task_grads) for p in policies]
        return multi

    def entries(self) -> list[MultiEntry]:
        return self.mean.entries() + [self.log_std]

    @torch.no_grad()
    def train_log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """``obs (K, T, B, obs_dim)``, ``act (K, T, B, A)`` -> ``(log_prob (K, T, B), cache)``."""
        mu, mlp_cache = self.mean.forward(obs)
        ls = self.log_std
        log_std = ls.effective() if ls.any_split else ls.shared.unsqueeze(1)  # (K, T or 1, A)
        scale = log_std.exp().expand(self.n_runs, self.n_tasks, -1).unsqueeze(2)  # (K, T, 1, A)
        var = scale**2
        diff = act - mu
        sq = diff**2
        logp = (-sq / (2 * var) - scale.log() - _LOG_SQRT_2PI).sum(-1)
        return logp, (mlp_cache, diff, sq, var)

    @torch.no_grad()
    def train_backward(self, cache: tuple, grad_log_prob: torch.Tensor, grad_log_std: float = 0.0) -> None:
        """Backward of :meth:`train_log_prob` for ``grad_log_prob (K, T, B)``, plus ``grad_log_std``
        added to every task's d(loss)/d(log-std); fills the gradient buffers."""
        mlp_cache, diff, sq, var = cache
        K, T, B = grad_log_prob.shape
        A = self.act_dim
        # each run's own path multiplies fresh (aligned) tensors: its references do too
        g_log_std = self.products(
            ("log_std", tuple(grad_log_prob.shape)),
            lambda: torch.bmm(grad_log_prob.reshape(K * T, 1, B), sq.view(K * T, B, A)).view(K, T, A),
            lambda: torch.stack([torch.bmm(grad_log_prob[k].clone().unsqueeze(1), sq[k].clone()).squeeze(1)
                                 for k in range(K)]))
        g_log_std = g_log_std / var.squeeze(2) - grad_log_prob.sum(2, keepdim=True)
        if grad_log_std:
            g_log_std = g_log_std + grad_log_std
        self.log_std.set_per_task_grads(g_log_std, self.track)
        self.mean.backward(mlp_cache, grad_log_prob.unsqueeze(-1) * diff / var, self.track)

    @torch.no_grad()
    def train_log_prob_task(self, obs: torch.Tensor, act: torch.Tensor, task: int) -> tuple[torch.Tensor, tuple]:
        """One task of every run: ``obs (K, B, obs_dim)``, ``act (K, B, A)`` -> ``(log_prob (K, B), cache)``."""
        mu, mlp_cache = self.mean.forward_task(obs, task)
        scale = self.log_std.task_value(task).exp().unsqueeze(1)  # (K, 1, A)
        var = scale**2
        diff = act - mu
        sq = diff**2
        logp = (-sq / (2 * var) - scale.log() - _LOG_SQRT_2PI).sum(-1)
        return logp, (mlp_cache, diff, sq, var, task)

    @torch.no_grad()
    def train_backward_task(self, cache: tuple, grad_log_prob: torch.Tensor,
                            grad_log_std: float = 0.0) -> list[tuple[MultiEntry, torch.Tensor]]:
        """Backward of :meth:`train_log_prob_task`: ``[(entry, gradient (K, *shape))]``."""
        mlp_cache, diff, sq, var, task = cache
        K = self.n_runs
        # fresh (aligned) operands in the references, as the run's own path multiplies
        g_log_std = self.products(("log_std_task", tuple(grad_log_prob.shape)),
                                  lambda: torch.bmm(grad_log_prob.unsqueeze(1), sq).squeeze(1),
                                  lambda: torch.stack([grad_log_prob[k].clone() @ sq[k].clone() for k in range(K)]))
        g_log_std = g_log_std / var.squeeze(1) - grad_log_prob.sum(1, keepdim=True)
        if grad_log_std:
            g_log_std = g_log_std + grad_log_std
        _track_row(self.log_std, task, g_log_std, self.track)
        grads = self.mean.backward_task(mlp_cache, grad_log_prob.unsqueeze(-1) * diff / var, self.track)
        grads.append((self.log_std, g_log_std))
        return grads


class MultiValue(_MultiNet):
    """K runs x :class:`SplitValue` (per-task gradients never recorded, as the trainer runs it)."""

    def __init__(self, n_runs: int, n_tasks: int, obs_dim: int, hidden: Sequence[int] = (64, 64, 64)):
        if n_runs < 1 or n_tasks < 1:
            raise ValueError(f"n_runs and n_tasks must be >= 1, got {n_runs}, {n_tasks}")
        self.n_runs, self.n_tasks, self.obs_dim = n_runs, n_tasks, obs_dim
        self.net = MultiSplitMLP(n_runs, n_tasks, [obs_dim, *hidden, 1], "value.")
        self.track = [False] * n_runs

    @classmethod
    def from_runs(cls, values: Sequence[SplitValue]) -> "MultiValue":
        first = values[0]
        hidden = [layer.out_dim for layer in first.net.layers[:-1]]
        multi = cls(len(values), first.n_tasks, first.obs_dim, hidden)
        for k, v in enumerate(values):
            multi.load_run(k, v)
        multi.track = [bool(v.net.layers[0].track_per_task_grads) for v in values]
        return multi

    def entries(self) -> list[MultiEntry]:
        return self.net.entries()

    def train_forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """``obs (K, T, B, obs_dim)`` -> ``(values (K, T, B), cache)``."""
        v, cache = self.net.forward(obs)
        return v.squeeze(-1), cache

    def train_backward(self, cache: tuple, grad_values: torch.Tensor) -> None:
        self.net.backward(cache, grad_values.unsqueeze(-1), self.track)

    def train_forward_task(self, obs: torch.Tensor, task: int) -> tuple[torch.Tensor, tuple]:
        """One task of every run: ``obs (K, B, obs_dim)`` -> ``(values (K, B), cache)``."""
        v, cache = self.net.forward_task(obs, task)
        return v.squeeze(-1), cache

    def train_backward_task(self, cache: tuple, grad_values: torch.Tensor) -> list[tuple[MultiEntry, torch.Tensor]]:
        return self.net.backward_task(cache, grad_values.unsqueeze(-1), self.track)


# -- Adam with a run axis --------------------------------------------------------------------------------
class _Slot:
    """One parameter tensor of the single-run parameter list (an entry's shared or per-task half)."""

    def __init__(self, entry: MultiEntry, per_task: bool):
        self.entry, self.per_task = entry, per_task
        self.param = entry.task if per_task else entry.shared
        self.grad = entry.grad_task if per_task else entry.grad_shared
        self.exp_avg = torch.zeros_like(self.param)
        self.exp_avg_sq = torch.zeros_like(self.param)
        self.step = torch.zeros(entry.n_runs)  # float32 per run, as Adam's 0-dim step tensors
        self.started = [False] * entry.n_runs  # run k has Adam state for this tensor
        self.order = [0] * entry.n_runs  # when run k's state was created (state_dict order)


class MultiAdam:
    """K runs' ``FastAdam`` (``torch.optim.Adam(fused=True)``) over their policy and value tensors.

    Each run's tensors keep their own moments (the tensor's shape) and step count (``step (K,)``),
    started when the run's tensor first has a gradient, as ``Adam`` does; a step updates each active
    run's slice of each tensor as a tensor of its own in ONE fused Adam call, the very kernel
    ``FastAdam`` calls per run. ``lr``: one learning rate per run.
    """

    def __init__(self, nets: Sequence[_MultiNet], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.nets = list(nets)
        self.n_runs = nets[0].n_runs
        self.slots = [_Slot(e, per_task) for net in self.nets for e in net.entries() for per_task in (False, True)]
        self.lr = [float(lr)] * self.n_runs
        self.betas, self.eps = (float(betas[0]), float(betas[1])), float(eps)
        self._one = torch.ones(())
        self._created = 0
        self._plan = None

    # -- one run's state in the single-run format ---------------------------------------------------------
    def _check_params(self, params: list) -> None:
        if len(params) != len(self.slots) or any(tuple(p.shape) != tuple(s.param.shape[1:])
                                                 for p, s in zip(params, self.slots)):
            raise ValueError("the run's parameters (policy.parameters() + value.parameters()) do not match this "
                             "batch's networks")

    def load_run(self, k: int, optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]) -> None:
        """Slot ``k`` takes one run's optimiser state; ``params`` = that run's ``policy.parameters()`` +
        ``value.parameters()`` (the optimiser's parameter list)."""
        params = list(params)
        self._check_params(params)
        index = {id(p): i for i, p in enumerate(params)}
        for s in self.slots:
            s.started[k] = False
            s.step[k] = 0.0
            s.exp_avg[k].zero_()
            s.exp_avg_sq[k].zero_()
        for p, st in optimizer.state.items():  # insertion order = state_dict order
            s = self.slots[index[id(p)]]
            if "exp_avg" not in st:
                continue
            s.exp_avg[k].copy_(st["exp_avg"])
            s.exp_avg_sq[k].copy_(st["exp_avg_sq"])
            s.step[k] = float(st["step"])
            self._start(s, k)
        self.lr[k] = float(optimizer.param_groups[0]["lr"])

    def store_run(self, k: int, optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]) -> None:
        """Write slot ``k``'s state into one run's optimiser over ``params`` (as :meth:`load_run`),
        with the states in the order the run's own optimiser would have created them."""
        params = list(params)
        self._check_params(params)
        optimizer.state.clear()
        for i in sorted((i for i, s in enumerate(self.slots) if s.started[k]), key=lambda i: self.slots[i].order[k]):
            s = self.slots[i]
            optimizer.state[params[i]] = {"step": s.step[k].clone(), "exp_avg": s.exp_avg[k].clone(),
                                          "exp_avg_sq": s.exp_avg_sq[k].clone()}
        for group in optimizer.param_groups:
            group["lr"] = self.lr[k]
        if hasattr(optimizer, "_round"):
            del optimizer._round  # TaskAlternatingAdam recomputes its round from the step counts

    def _start(self, s: _Slot, k: int) -> None:
        s.started[k] = True
        self._created += 1
        s.order[k] = self._created

    @torch.no_grad()
    def copy_state_to_split(self, k: int, net: _MultiNet, newly_split: dict[str, torch.Tensor]) -> None:
        """Run ``k``'s ``copy_adam_state_to_split``: newly split entries' per-task moments start from
        the shared entry's (state created with the shared entry's step if it had none)."""
        halves = {s.entry.name: {} for s in self.slots}
        for s in self.slots:
            if s.entry in net.entries():
                halves[s.entry.name][s.per_task] = s
        for name, sel in newly_split.items():  # in the caller's order, as the run's own copy creates states
            if not bool(sel.any()):
                continue
            shared, task = halves[name][False], halves[name][True]
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

    def prepare(self, active: Sequence[bool]) -> None:
        """Plan the steps of one update of the ``active`` runs (masks, learning rates and the runs
        taking part are fixed during an update): which run's slice of which tensor each step
        updates. States a run's own optimiser would create at its first step are created here."""
        if len(active) != self.n_runs:
            raise ValueError(f"one active flag per run ({self.n_runs}) needed, got {len(active)}")
        active = tuple(bool(a) for a in active)
        groups: dict[float, dict] = {}
        norm_lists = [[] for _ in range(self.n_runs)]  # per run, its gradients in parameter order (clipping)
        for k in range(self.n_runs):
            if not active[k]:
                continue
            lists = groups.setdefault(self.lr[k], self._new_lists())
            for s in self.slots:
                if s.per_task and not s.entry.task_has_grad[k]:
                    continue  # its .grad is None in the run's own optimiser: not stepped
                if not s.started[k]:  # Adam's state of a first step: step 0, zero moments
                    s.step[k] = 0.0
                    self._start(s, k)
                lists["params"].append(s.param[k])
                lists["grads"].append(s.grad[k])
                lists["exp_avgs"].append(s.exp_avg[k])
                lists["exp_avg_sqs"].append(s.exp_avg_sq[k])
                lists["steps"].append(s.step[k:k + 1].view(()))
                norm_lists[k].append(s.grad[k])
        self._plan = (list(groups.items()), norm_lists)

    @torch.no_grad()
    def step(self, max_grad_norm: float | None = None) -> None:
        """One Adam step of every run of the prepared update from the gradient buffers the backward
        pass filled (``optimizer: mixed``); with ``max_grad_norm`` each run's gradients are first
        scaled as ``torch.nn.utils.clip_grad_norm_`` scales one run's."""
        groups, norm_lists = self._plan
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


class MultiTaskAlternatingAdam(MultiAdam):
    """K runs' :class:`TaskAlternatingAdam` (``optimizer: per_task``): after ``prepare``, per
    minibatch ``begin_round()``, then ``step_task(i, grads)`` for each task i, every active run
    stepping its task i at once. ``round``: each run's rounds so far (its bias-correction count)."""

    def __init__(self, nets: Sequence[_MultiNet], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        super().__init__(nets, lr, betas, eps)
        self.round = [0] * self.n_runs

    def load_run(self, k: int, optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]) -> None:
        super().load_run(k, optimizer, params)
        self.round[k] = max((int(s.step[k]) for s in self.slots if s.started[k]), default=0)

    def _step_order(self) -> list[MultiEntry]:
        """The entries in the order one run's ``step_task`` receives them (``train_backward_task``)."""
        order = []
        for net in self.nets:
            mlp = net.mean if isinstance(net, MultiGaussianPolicy) else net.net
            for we, be in reversed(mlp.layers):
                order += [we, be]
            if isinstance(net, MultiGaussianPolicy):
                order.append(net.log_std)
        return order

    def prepare(self, active: Sequence[bool]) -> None:
        """Plan one update of the ``active`` runs: per task, which halves each run steps (shared where
        not split, the task's row of the per-task tensor where split). States a run's own optimiser
        would create during the update start here with its current round (``begin_round`` then
        advances them with the others, as they would have been created at the advanced count)."""
        if len(active) != self.n_runs:
            raise ValueError(f"one active flag per run ({self.n_runs}) needed, got {len(active)}")
        active = tuple(bool(a) for a in active)
        halves_of = {}
        for s in self.slots:
            halves_of.setdefault(id(s.entry), {})[s.per_task] = s
        order = self._step_order()
        tasks = []
        for i in range(self.nets[0].n_tasks):
            groups: dict[float, dict] = {}
            for k in range(self.n_runs):
                if not active[k]:
                    continue
                lists = groups.setdefault(self.lr[k], self._new_lists())
                for e in order:
                    shared, task = halves_of[id(e)][False], halves_of[id(e)][True]
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
        self._plan = (tasks, round_steps, active)

    @torch.no_grad()
    def begin_round(self) -> None:
        """Every active run's ``begin_round``: its step counts advance by one."""
        _, round_steps, active = self._plan
        if round_steps:
            torch._foreach_add_(round_steps, self._one)
        for k in range(self.n_runs):
            if active[k]:
                self.round[k] += 1

    @torch.no_grad()
    def step_task(self, task: int, grads: list[tuple[MultiEntry, torch.Tensor]]) -> None:
        """Task ``task``'s Adam step of every active run from ``grads`` = ``[(entry, gradient (K,
        *shape))]`` (``train_backward_task``'s): the shared halves take the gradient where not split,
        the task's row of the per-task halves where split."""
        for e, g in grads:
            if e.any_split:
                torch.where(e.mask, _ZERO, g, out=e.grad_shared)
                torch.where(e.mask, g, _ZERO, out=e.grad_row)
            else:
                e.grad_shared.copy_(g)
        for lr, lists in self._plan[0][task]:
            self._fused(lists, lr)


# -- the batch of K runs and the update ------------------------------------------------------------------
@dataclass
class RunsBatch:
    """K runs' ``Batch``es stacked: every field with a leading run axis (K, T, N, ...)."""

    obs: torch.Tensor  #: (K, T, N, policy_in) float32
    actions: torch.Tensor  #: (K, T, N, A) float32
    old_logp: torch.Tensor  #: (K, T, N) float32
    advantages: torch.Tensor  #: (K, T, N) float32
    returns: torch.Tensor  #: (K, T, N) float32

    @classmethod
    def stack(cls, batches: Sequence[Batch | None]) -> "RunsBatch":
        """Stack the runs' batches (all of one shape); None (a run that does not update this
        iteration) becomes zeros."""
        present = [b for b in batches if b is not None]
        if not present:
            raise ValueError("RunsBatch.stack needs at least one batch")
        out = {}
        for f in fields(Batch):
            ref = getattr(present[0], f.name)
            for b in present:
                if getattr(b, f.name).shape != ref.shape:
                    raise ValueError(f"batches of runs differ in {f.name}: {tuple(getattr(b, f.name).shape)} vs "
                                     f"{tuple(ref.shape)}; runs batched together need one shape")
            out[f.name] = torch.stack([getattr(b, f.name) if b is not None else torch.zeros_like(ref) for b in batches])
        return cls(**out)

    def _map(self, fn) -> "RunsBatch":
        return RunsBatch(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def gather_rows(self, order: torch.Tensor) -> "RunsBatch":
        """Run k's task i rows in the order ``order[k, i]`` (``order (K, T, N)`` int64)."""
        K, T, N = order.shape
        return self._map(lambda x: gather_rows(x.reshape(K * T, *x.shape[2:]), order.reshape(K * T, N)).view(x.shape))

    def rows(self, start: int, stop: int) -> "RunsBatch":
        """Rows ``start:stop`` of every run's tasks (views): a minibatch (K, T, B, ...)."""
        return self._map(lambda x: x[:, :, start:stop])

    def task(self, i: int) -> "RunsBatch":
        """Task ``i``'s rows of every run, the task axis dropped: fields (K, N, ...) (views)."""
        return self._map(lambda x: x[:, i])


def _standardize_rows(adv: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``ppo.standardize_minibatch`` over the last axis of ``adv (..., B)`` (sample std)."""
    if adv.shape[-1] < 2:
        return adv
    return (adv - adv.mean(dim=-1, keepdim=True)) / (adv.std(dim=-1, keepdim=True) + eps)


def _surrogate(log_prob: torch.Tensor, old: torch.Tensor, adv: torch.Tensor, bounds, weight: float):
    """``clipped_surrogate_with_grad`` over ``(K, ..., B)`` with each run's clip range: ``bounds`` =
    (lower, upper) float32 tensors (K, 1, ...) (each ``float32(1 -/+ clip)``) or Python floats."""
    ratio = torch.exp(log_prob - old)
    surr1 = ratio * adv
    surr2 = torch.clamp(ratio, bounds[0], bounds[1]) * adv
    loss = -torch.minimum(surr1, surr2).mean(dim=-1)
    grad = surr1.masked_fill_(surr1 > surr2, 0.0).mul_(-weight / adv.shape[-1])
    return loss, grad


def _clip_bounds(clips: Sequence[float], dims: int):
    """The clamp bounds of :func:`_surrogate`: Python floats when every run has the same clip."""
    if len(set(clips)) == 1:
        return 1.0 - clips[0], 1.0 + clips[0]
    shape = (len(clips),) + (1,) * dims
    lo = torch.tensor([1.0 - c for c in clips], dtype=torch.float64).to(torch.float32).view(shape)
    hi = torch.tensor([1.0 + c for c in clips], dtype=torch.float64).to(torch.float32).view(shape)
    return lo, hi


def multi_ppo_update(policy: MultiGaussianPolicy, value: MultiValue, optimizer: MultiAdam, batch: RunsBatch,
                     ppo: PPOConfig, *, clips: Sequence[float], rngs: Sequence[np.random.Generator | None]
                     ) -> list[UpdateStats | None]:
    """``ppo_update`` of K runs at once: run k's result is that of ``ppo_update`` on its own
    networks, optimiser (learning rate ``optimizer.lr[k]``), ``batch`` row k, clip ``clips[k]`` and
    generator ``rngs[k]`` (which draws the same minibatch orders); the policy records per-task
    gradients for the runs ``policy.track`` names. A run whose ``rngs[k]`` is None does not update
    (networks, moments, per-task gradients and generator untouched, its row of ``batch`` ignored) and
    gets None instead of its ``UpdateStats``. ``ppo`` is every run's (the runs share one shape)."""
    K, T, N = batch.advantages.shape
    if len(clips) != K or len(rngs) != K or policy.n_runs != K or value.n_runs != K or optimizer.n_runs != K:
        raise ValueError(f"multi_ppo_update: batch has {K} runs, clips {len(clips)}, rngs {len(rngs)}, "
                         f"policy {policy.n_runs}, value {value.n_runs}, optimizer {optimizer.n_runs}")
    per_task = ppo.optimizer == "per_task"
    if per_task != isinstance(optimizer, MultiTaskAlternatingAdam):
        raise ValueError(f"ppo.optimizer {ppo.optimizer!r} needs "
                         f"{'MultiTaskAlternatingAdam' if per_task else 'MultiAdam'}, got {type(optimizer).__name__}")
    active = [r is not None for r in rngs]
    optimizer.prepare(active)
    tracked = policy.track, value.track
    policy.track = [t and a for t, a in zip(policy.track, active)]
    value.track = [t and a for t, a in zip(value.track, active)]
    try:
        n_minibatches = max(1, N // ppo.minibatch_per_task)
        sums = np.zeros((K, 4))
        count = 0
        unused = np.broadcast_to(np.arange(N), (T, N))  # order of a run that does not update
        step = _step_tasks_in_turn if per_task else _mixed_step
        for _ in range(ppo.epochs):
            order = np.stack([np.argsort(r.random((T, N)), axis=1) if r is not None else unused for r in rngs])
            shuffled = batch.gather_rows(torch.from_numpy(order))  # one gather per epoch, as ppo_update
            for chunk in np.array_split(np.arange(N), n_minibatches):
                minibatch = shuffled.rows(chunk[0], chunk[-1] + 1)
                sums += step(policy, value, optimizer, minibatch, ppo, clips, active)
                count += 1
    finally:
        policy.track, value.track = tracked
    means = sums / max(count, 1)
    return [UpdateStats(*means[k]) if active[k] else None for k in range(K)]


def _mixed_step(policy, value, optimizer, minibatch: RunsBatch, ppo: PPOConfig, clips, active) -> np.ndarray:
    """One mixed-task minibatch of every run (``ppo_loss_backward`` + one Adam step); the figures (K, 4)."""
    K, T = minibatch.advantages.shape[:2]
    if ppo.advantage_norm == "per_minibatch":
        minibatch = replace(minibatch, advantages=_standardize_rows(minibatch.advantages))
    log_prob, policy_cache = policy.train_log_prob(minibatch.obs, minibatch.actions)
    policy_loss, grad_log_prob = _surrogate(log_prob, minibatch.old_logp, minibatch.advantages,
                                            _clip_bounds(clips, 2), 1.0 / T)
    values, value_cache = value.train_forward(minibatch.obs)
    v_loss, grad_values = value_loss_with_grad(values, minibatch.returns, ppo.value_coef / T)
    policy.train_backward(policy_cache, grad_log_prob, -ppo.entropy_coef / T)
    value.train_backward(value_cache, grad_values)
    optimizer.step(ppo.max_grad_norm)
    log_ratio = (log_prob - minibatch.old_logp).numpy().reshape(K, -1)
    ratio_m1 = np.exp(log_ratio) - 1
    clip32 = np.asarray(clips, dtype=np.float32)[:, None]  # a Python float compares as float32 (NEP 50)
    out = np.empty((K, 4))
    out[:, 0] = policy_loss.numpy().mean(axis=1)
    out[:, 1] = v_loss.numpy().mean(axis=1)
    out[:, 2] = (ratio_m1 - log_ratio).mean(axis=1)
    out[:, 3] = (np.abs(ratio_m1) > clip32).mean(axis=1)
    return out


def _step_tasks_in_turn(policy, value, optimizer, minibatch: RunsBatch, ppo: PPOConfig, clips, active) -> np.ndarray:
    """The authors' optimiser on one minibatch of every run: task 0, ..., T-1 in turn, each one Adam
    step of every active run on that task's samples. The figures (K, 4), summed over tasks / T."""
    K, T = minibatch.advantages.shape[:2]
    sums = np.zeros((K, 4))
    bounds = _clip_bounds(clips, 1)
    clip32 = np.asarray(clips, dtype=np.float32)[:, None]
    optimizer.begin_round()
    for i in range(T):
        own = minibatch.task(i)
        if ppo.advantage_norm == "per_minibatch":
            own = replace(own, advantages=_standardize_rows(own.advantages))
        log_prob, policy_cache = policy.train_log_prob_task(own.obs, own.actions, i)
        policy_loss, grad_log_prob = _surrogate(log_prob, own.old_logp, own.advantages, bounds, 1.0)
        values, value_cache = value.train_forward_task(own.obs, i)
        v_loss, grad_values = value_loss_with_grad(values, own.returns, ppo.value_coef)
        grads = (policy.train_backward_task(policy_cache, grad_log_prob, -ppo.entropy_coef)
                 + value.train_backward_task(value_cache, grad_values))
        if ppo.max_grad_norm:
            _clip_task_grads(grads, ppo.max_grad_norm, active)
        optimizer.step_task(i, grads)
        log_ratio = (log_prob - own.old_logp).numpy()
        ratio_m1 = np.exp(log_ratio) - 1
        sums[:, 0] += policy_loss.numpy().astype(np.float64)
        sums[:, 1] += v_loss.numpy().astype(np.float64)
        sums[:, 2] += (ratio_m1 - log_ratio).mean(axis=1)
        sums[:, 3] += (np.abs(ratio_m1) > clip32).mean(axis=1)
    return sums / T


def _clip_task_grads(grads: list[tuple[MultiEntry, torch.Tensor]], max_norm: float, active) -> None:
    """The per-task optimiser's clipping, per run: its task gradients scaled by
    ``max_norm / (norm + 1e-6)`` when their global norm exceeds ``max_norm``."""
    K = len(active)
    norms = torch._foreach_norm([g[k] for k in range(K) for _, g in grads], 2.0)
    n = len(grads)
    for k in range(K):
        if not active[k]:
            continue
        norm = float(torch.linalg.vector_norm(torch.stack(norms[k * n:(k + 1) * n])))
        if norm > max_norm:
            torch._foreach_mul_([g[k] for _, g in grads], max_norm / (norm + 1e-6))


def runs_from_single(policies: Sequence[SplitGaussianPolicy], values: Sequence[SplitValue],
                     optimizers: Sequence[torch.optim.Optimizer]):
    """``(MultiGaussianPolicy, MultiValue, MultiAdam | MultiTaskAlternatingAdam)`` holding the given
    runs (slot k = run k): the optimiser kind follows ``optimizers`` (``TaskAlternatingAdam`` or
    ``FastAdam``; all of one kind), its ``eps``/``betas`` the first run's."""
    kinds = {isinstance(o, TaskAlternatingAdam) for o in optimizers}
    if len(kinds) != 1 or not all(isinstance(o, FastAdam) for o in optimizers):
        raise ValueError("runs batched together need one optimiser kind: all FastAdam or all TaskAlternatingAdam")
    policy, value = MultiGaussianPolicy.from_runs(policies), MultiValue.from_runs(values)
    group = optimizers[0].param_groups[0]
    cls = MultiTaskAlternatingAdam if kinds.pop() else MultiAdam
    optimizer = cls([policy, value], lr=group["lr"], betas=group["betas"], eps=group["eps"])
    for k, (p, v, o) in enumerate(zip(policies, values, optimizers)):
        optimizer.load_run(k, o, list(p.parameters()) + list(v.parameters()))
    return policy, value, optimizer


def runs_to_single(k: int, policy: MultiGaussianPolicy, value: MultiValue, optimizer: MultiAdam,
                   single_policy: SplitGaussianPolicy, single_value: SplitValue,
                   single_optimizer: torch.optim.Optimizer) -> None:
    """Write run ``k`` into single-run modules and optimiser (to checkpoint or roll out with them)."""
    policy.store_run(k, single_policy)
    value.store_run(k, single_value)
    optimizer.store_run(k, single_optimizer, list(single_policy.parameters()) + list(single_value.parameters()))
