"""K runs' training networks in one batched computation (a leading run axis): the update's forward and backward.

Shapes: ``K`` runs, ``T`` tasks, ``B`` samples per task in a minibatch, ``A`` action dim. Every tensor
of :mod:`mt_specialize.learning.policy` gets a leading run axis: an entry's shared values ``(K,
*shape)``, its per-task copies ``(K, T, *shape)``, its split mask ``(K, *shape)``. A single run is a
batch of one.

The runs' state lives here. :class:`BatchedRuns` binds K runs' ``SplitGaussianPolicy``,
``SplitValue`` and ``optim.RunAdam`` to slots 0..K-1: their parameters, mask buffers and Adam
states become views of their slot (``Tensor.data``), so a run's modules (rollout, revert rule,
split, checkpoints) and the batched update (``ppo_update.ppo_update``) read and write the same
numbers, and nothing is copied between iterations. Binding again (a group that loses a run) copies
the slots into a new batch.

Runs share nothing but the arithmetic: each has its own masks, Adam moments and step counts,
minibatch order, learning rate, clip range and per-task gradient recording, and a run's numbers do
not depend on which runs share its batch or in which slot (``test/test_multi.py``, exact):

* every product is the run's own product (a layer nothing is split in: ``(T*B, in) @ (in, out)``;
  a split layer: ``(B, in) @ (in, out)`` per task) as one batch element of a ``baddbmm``/``bmm``
  over runs (x tasks); where MKL rounds a batched product differently (thin outputs such as the
  value head's), :class:`VerifiedProducts` finds out on first use and computes that product run by
  run, each as the run's own torch call;
* every reduction runs over the same elements in the same order. Where a run sums a layer's weight
  gradient over all tasks' samples at once (nothing split, no per-task gradients recorded) but
  another run of the batch needs the per-task form, both forms are computed and each run takes its own.

Single-threaded torch only: with more intra-op threads MKL rounds some products differently.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .optim import MultiAdam, RunAdam
from .policy import SplitGaussianPolicy, SplitValue

__all__ = ["MultiEntry", "VerifiedProducts", "MultiSplitMLP", "MultiGaussianPolicy", "MultiValue", "BatchedRuns"]

_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))
_ZERO = torch.zeros(())  # float32 0 for torch.where(..., out=)


class MultiEntry:
    """One logical entry (a layer's weight or bias, or the log-std) of K runs.

    ``shared (K, *shape)``, ``task (K, T, *shape)`` float32 values and ``mask (K, *shape)`` bool
    (True = per-task), as :class:`mt_specialize.learning.policy.SplitLinear` holds them for one run
    (a bound run's tensors are views of its slot: :meth:`bind`). Gradient buffers
    ``grad_shared``/``grad_task`` (same shapes) are written by the backward passes and read by the
    optimiser; ``task_grads (K, T, *shape)`` accumulates the per-task gradients of the runs that
    record them. :meth:`refresh` reads the masks' per-run flags (after the masks changed).
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
        self.refresh()

    def refresh(self) -> None:
        """Recompute the per-run mask flags: ``split`` (any entry per-task; then the per-task tensor
        takes part in the run's update), ``full`` (every entry per-task)."""
        flat = self.mask.reshape(self.n_runs, -1)
        self.split = tuple(bool(v) for v in flat.any(1))
        self.full = tuple(bool(v) for v in flat.all(1))
        self.any_split = any(self.split)
        self.mask_b = self.mask.unsqueeze(1)  # (K, 1, *shape): broadcasts over tasks

    @torch.no_grad()
    def bind(self, k: int, shared: torch.Tensor, task: torch.Tensor, mask: torch.Tensor) -> None:
        """Slot ``k`` takes one run's ``shared (*shape)``, ``task (T, *shape)`` and ``mask`` tensors,
        which then become views of the slot (``.data``: the same tensor objects, parameters stay
        parameters): what the run's module reads and writes, the update reads and writes."""
        self.shared[k].copy_(shared)
        self.task[k].copy_(task)
        self.mask[k].copy_(mask)
        shared.data, task.data, mask.data = self.shared[k], self.task[k], self.mask[k]
        self.refresh()

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
        value: shared entries get the sum over tasks, split ones their task's. ``flat (K, *shape)``
        with bool ``flat_runs (K,)``: for those runs the shared gradient is ``flat`` (the sum over all
        tasks' samples at once, which a run takes when it neither splits this layer nor records
        per-task gradients). Runs with ``track`` True accumulate ``grad`` into ``task_grads``."""
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
            torch.where(self.mask_b, grad, _ZERO, out=self.grad_task)
        else:
            torch.sum(grad, 1, out=self.grad_shared)
        if flat is not None:
            torch.where(flat_runs.view(-1, *(1,) * len(self.shape)), flat, self.grad_shared, out=self.grad_shared)

    def set_flat_grad(self, grad: torch.Tensor) -> None:
        """Gradient buffers when no run splits this entry or records per-task gradients: ``grad (K,
        *shape)`` summed over all tasks' samples is the shared gradient."""
        self.grad_shared.copy_(grad)


class VerifiedProducts:
    """Batched matrix products that reproduce one run's own products bit for bit, or are not used.

    MKL picks its kernel by shape, and for some shapes (thin outputs such as the value head's
    ``64 -> 1``, the per-task optimiser's ``(B,) @ (B, 6)``, at some row counts ``64 -> 6``) a product
    batched over runs is rounded differently from the same product of one run alone. At each call
    site and shape (and pattern of the runs' split states), the batched product and each run's own
    product (the ``per_run`` torch calls, which define a run's numbers) are both computed and compared
    until the batched one has reproduced ``min_values`` output values exactly: from then on the site computes
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
    """Run ``k``'s training values of entry ``e`` as it builds them alone: ``shared (*shape)``
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
                np.tanh(zn, out=zn)  # NumPy's float32 tanh, in place (as policy.fast_tanh)
                h = z
                hs.append(h)
        return z, (hs, weights)

    def _single_forward(self, k: int, i: int, h: torch.Tensor) -> torch.Tensor:
        """Layer ``i`` of run ``k`` on its ``h (T, B, in)``: its own product (``addmm`` when nothing is split)."""
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
            if not all(per_task):  # these runs' own form: one product over all tasks' samples
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
        """d(loss)/d(input) of layer ``i`` of run ``k`` for its ``g (T, B, out)``, its own product."""
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
    track: list[bool]  # per run: record per-task gradients (set by the update)

    def entries(self) -> list[MultiEntry]:
        raise NotImplementedError

    def step_order(self) -> list[MultiEntry]:
        """The entries in the order a per-task step visits them (the backward pass's: last layer first)."""
        raise NotImplementedError

    def bind(self, k: int, net) -> None:
        """Slot ``k`` takes one run's network (values and masks), whose tensors become views of the slot."""
        if not 0 <= k < self.n_runs:
            raise ValueError(f"run slot {k} outside [0, {self.n_runs})")
        shapes = {e.name: e.shape for e in self.entries()}
        theirs = {n: tuple(s) for n, s in net.param_shapes().items()}
        if theirs != shapes or net.n_tasks != self.n_tasks:
            raise ValueError(f"a run's network has tasks {net.n_tasks} and entries {theirs}; this batch holds "
                             f"tasks {self.n_tasks} and entries {shapes}: runs batched together need one shape")
        single = net._named_entries()
        for e in self.entries():
            owner, local = single[e.name]
            shared, task, mask_name = net._entry_tensors(owner, local)
            e.bind(k, shared, task, getattr(owner, mask_name))

    def refresh(self) -> None:
        """Re-read every entry's mask flags (a run's masks change through its module's views)."""
        for e in self.entries():
            e.refresh()

    def zero_per_task_grads(self) -> None:
        for e in self.entries():
            e.task_grads = None

    def per_task_grads(self, k: int) -> dict[str, torch.Tensor]:
        """Run ``k``'s ``per_task_grads()``: name -> (T, *shape), summed over the last update's minibatches."""
        out = {}
        for e in self.entries():
            if e.task_grads is None:
                raise RuntimeError(f"no per-task gradient recorded for {e.name!r}")
            out[e.name] = e.task_grads[k].clone()
        return out


class MultiGaussianPolicy(_MultiNet):
    """K runs x :class:`SplitGaussianPolicy`: mean MLP and state-independent log-std, per-run masks."""

    def __init__(self, n_runs: int, n_tasks: int, obs_dim: int, act_dim: int, hidden: Sequence[int] = (64, 64, 64)):
        if n_runs < 1 or n_tasks < 1:
            raise ValueError(f"n_runs and n_tasks must be >= 1, got {n_runs}, {n_tasks}")
        self.n_runs, self.n_tasks, self.obs_dim, self.act_dim = n_runs, n_tasks, obs_dim, act_dim
        self.products = VerifiedProducts()
        self.mean = MultiSplitMLP(n_runs, n_tasks, [obs_dim, *hidden, act_dim], "mean.", self.products)
        self.log_std = MultiEntry("log_std", n_runs, n_tasks, (act_dim,))
        self.track = [False] * n_runs

    @classmethod
    def bound(cls, policies: Sequence[SplitGaussianPolicy]) -> "MultiGaussianPolicy":
        """The runs' policies bound to slots 0..K-1 (:meth:`bind`); they must have one shape."""
        first = policies[0]
        multi = cls(len(policies), first.n_tasks, first.obs_dim, first.act_dim,
                    [layer.out_dim for layer in first.mean.layers[:-1]])
        for k, p in enumerate(policies):
            multi.bind(k, p)
        return multi

    def entries(self) -> list[MultiEntry]:
        return self.mean.entries() + [self.log_std]

    def step_order(self) -> list[MultiEntry]:
        return [e for we, be in reversed(self.mean.layers) for e in (we, be)] + [self.log_std]

    @torch.no_grad()
    def train_log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """``obs (K, T, B, obs_dim)``, ``act (K, T, B, A)`` -> ``(log_prob (K, T, B), cache)``
        (``Normal.log_prob`` summed over A, without autograd)."""
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
        added to every task's d(loss)/d(log-std) (an entropy bonus); fills the gradient buffers."""
        mlp_cache, diff, sq, var = cache
        K, T, B = grad_log_prob.shape
        A = self.act_dim
        # d logp / d mu = (a - mu) / var;  d logp / d log_std = (a - mu)^2 / var - 1
        # each run's own product multiplies fresh (aligned) tensors: its reference does too
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
        """Backward of :meth:`train_log_prob_task`: ``[(entry, gradient (K, *shape))]`` in :meth:`step_order`."""
        mlp_cache, diff, sq, var, task = cache
        K = self.n_runs
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
    def bound(cls, values: Sequence[SplitValue]) -> "MultiValue":
        """The runs' value nets bound to slots 0..K-1 (:meth:`bind`)."""
        first = values[0]
        multi = cls(len(values), first.n_tasks, first.obs_dim, [layer.out_dim for layer in first.net.layers[:-1]])
        for k, v in enumerate(values):
            multi.bind(k, v)
        return multi

    def entries(self) -> list[MultiEntry]:
        return self.net.entries()

    def step_order(self) -> list[MultiEntry]:
        return [e for we, be in reversed(self.net.layers) for e in (we, be)]

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


class BatchedRuns:
    """K runs' training state in one batch: ``policy`` (:class:`MultiGaussianPolicy`), ``value``
    (:class:`MultiValue`) and ``optimizer`` (``optim.MultiAdam``), slot k = run k.

    ``BatchedRuns([(policy, value, adam), ...])`` binds each run's ``SplitGaussianPolicy``,
    ``SplitValue`` and ``RunAdam`` (over ``policy.parameters() + value.parameters()``) to its slot:
    their current values, masks and Adam state are copied in, and from then on their tensors are views
    of the slot (module docstring). ``ppo_update.ppo_update`` updates the batch."""

    def __init__(self, runs: Sequence[tuple[SplitGaussianPolicy, SplitValue, RunAdam]]):
        if not runs:
            raise ValueError("a batch of runs needs at least one run")
        policies, values, adams = zip(*runs)
        self.n_runs = len(runs)
        self.policy = MultiGaussianPolicy.bound(policies)
        self.value = MultiValue.bound(values)
        self.optimizer = MultiAdam([self.policy, self.value], adams)

    def refresh(self) -> None:
        """Re-read the runs' masks (they change through the runs' modules)."""
        self.policy.refresh()
        self.value.refresh()
