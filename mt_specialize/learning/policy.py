"""Split (partially per-task) networks for multi-task PPO.

Shapes: ``T`` = number of tasks, ``B`` = samples per task, ``A`` = action dim. Networks are float32.

Every policy entry (each weight, bias and log-std element) exists twice:

* a **shared** value ``W_shared`` of the entry's logical shape, and
* **per-task** copies ``W_task`` of shape ``(T, *shape)``,

plus a boolean **split mask** buffer of the logical shape (``True`` = the entry is per-task).
The weight task ``i`` actually uses (its *effective* weight) is::

    W_eff[i] = where(mask, W_task[i], W_shared)

and all tasks run in ONE batched computation (``torch.baddbmm`` over the task axis). There are no
N network copies kept in sync by copying.

Gradients / optimiser (read this before writing a trainer)
----------------------------------------------------------
Because of the ``where``, autograd gives a *shared* entry of ``W_shared`` the **sum of all tasks'
gradients** and a *split* entry of ``W_task[i]`` **only task i's gradient**. The halves that are
not used (entries of ``W_shared`` that are split, entries of ``W_task`` that are shared) receive a
zero gradient. Adam still moves those unused halves through its momentum, but they never enter
the forward pass, so only the *effective* weights matter and those are updated correctly: one
optimiser over all parameters is fine. When nothing is split (all masks False, the joint phase)
``W_task`` is not part of the graph at all (its ``.grad`` stays ``None`` and Adam skips it).

Per-task gradients
------------------
During every grad-enabled forward, hooks are registered on the effective tensors (shape
``(T, *shape)``). Their gradients are **accumulated** (like ``.grad``) into per-module buffers
until :meth:`zero_per_task_grads` (also called by ``module.zero_grad()``). If the loss is a *sum*
of per-task terms, ``per_task_grads()[name][i]`` is exactly task i's own gradient w.r.t. its
effective parameter (with a mean over tasks it is that divided by T, which does not change the
ranking of the gradient spread). Accumulating over an iteration's minibatches gives the sum over
minibatches that the specialization score needs.

Training fast path
------------------
``train_log_prob`` / ``train_forward`` + ``train_backward`` compute the same forward values and
gradients (float32 rounding) without autograd: hand-written backward of the batched MLP, effective
weights built once per call, one ``(T*B, in) @ (in, out)`` matmul for a layer with nothing split.
``train_backward`` SETS ``.grad`` exactly as ``zero_grad(set_to_none=False)`` + ``backward`` would
(a per-task tensor not in the graph keeps ``.grad`` None) and accumulates the per-task gradients
like the hooks. The trainer's PPO update uses it (about 2/3 of an iteration's time otherwise).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "normc_",
    "orthogonal_",
    "SplitLinear",
    "SplitMLP",
    "SplitGaussianPolicy",
    "SplitValue",
    "copy_adam_state_to_split",
    "EntryGrad",
]

def normc_(weight: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """In-place OpenAI-baselines ``normc_initializer`` for a weight stored as ``(in, out)``.

    Draws a standard Gaussian (float64) and rescales every output unit's incoming weight column
    (axis 0) to Euclidean norm ``gain``. Returns ``weight``.
    """
    with torch.no_grad():
        w = torch.randn(weight.shape, dtype=torch.float64, generator=generator)
        w *= gain / torch.sqrt((w**2).sum(dim=0, keepdim=True))
        weight.copy_(w.to(weight.dtype))
    return weight


def orthogonal_(weight: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """In-place ``torch.nn.init.orthogonal_`` (Stable-Baselines3's init) for a weight stored as
    ``(in, out)``: drawn as torch's ``(out, in)`` Linear weight and transposed, so the columns
    (in >= out) or rows (in < out) are orthogonal with norm ``gain``. Returns ``weight``."""
    with torch.no_grad():
        w = torch.nn.init.orthogonal_(torch.empty(weight.shape[1], weight.shape[0]), gain=gain)
        weight.copy_(w.t())
    return weight


_INITIALIZERS = {"normc": normc_, "orthogonal": orthogonal_}
# (hidden, policy output, value output) gains of each init: baselines' normc, SB3's orthogonal
INIT_GAINS = {"normc": (1.0, 0.01, 1.0), "orthogonal": (math.sqrt(2.0), 0.01, 1.0)}


def _check_init(init: str) -> None:
    if init not in _INITIALIZERS:
        raise ValueError(f"unknown init {init!r}; allowed {sorted(_INITIALIZERS)}")


class _NumpyTanh(torch.autograd.Function):
    """tanh computed by NumPy's float32 kernel: several times faster than this CPU torch build's on
    the small (T, batch, 64) tensors of training (bench/README.md). The gradient is torch's own
    ``tanh_backward``, (1 - y^2) * grad."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = torch.from_numpy(np.tanh(x.detach().numpy()))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def fast_tanh(x: torch.Tensor) -> torch.Tensor:
    """``torch.tanh`` with NumPy's faster float32 kernel (CPU tensors); the networks' activation."""
    return _NumpyTanh.apply(x)


def _effective(shared: torch.Tensor, task: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(T, *shape) effective values ``where(mask, task, shared)``; a plain expand (no ``where``,
    per-task tensor not in the graph) when nothing is split."""
    if not bool(mask.any()):
        return shared.expand(task.shape)
    return torch.where(mask, task, shared)


def _mask_state(mask: torch.Tensor) -> tuple[bool, torch.Tensor | None]:
    """``(mask.any(), ~mask)`` of a split-mask buffer, cached until the buffer changes (keyed on
    the tensor and its in-place version counter: ``set_split_masks``/``load_state_dict`` bump it)."""
    key = (mask._version, mask.data_ptr())
    cached = _MASK_CACHE.get(id(mask))
    if cached is None or cached[0] is not mask or cached[1] != key:
        anyv = bool(mask.any())
        cached = (mask, key, anyv, ~mask if anyv else None)
        _MASK_CACHE[id(mask)] = cached
    return cached[2], cached[3]


_MASK_CACHE: dict[int, tuple] = {}


def _train_params(shared: torch.Tensor, task: torch.Tensor, mask: torch.Tensor):
    """Detached values a training forward uses: ``(shared, False)`` when nothing is split (one
    value for every task), else ``((T, *shape) where(mask, task, shared), True)``."""
    split, _ = _mask_state(mask)
    if not split:
        return shared.detach(), False
    return torch.where(mask, task.detach(), shared.detach()), True


def _task_value(shared: torch.Tensor, task: torch.Tensor, mask: torch.Tensor, index: int) -> torch.Tensor:
    """Detached ``(*shape)`` values task ``index`` uses: ``where(mask, task[index], shared)``
    (``shared`` itself when nothing is split)."""
    split, _ = _mask_state(mask)
    if not split:
        return shared.detach()
    return torch.where(mask, task.detach()[index], shared.detach())


class EntryGrad(NamedTuple):
    """The gradient of ONE task's loss w.r.t. that task's effective value of one split entry:
    ``grad`` has the entry's logical shape. ``shared``/``task``/``mask`` are the entry's tensors
    (see :class:`SplitLinear`); :class:`mt_specialize.learning.optim.TaskAlternatingAdam` applies it."""

    shared: torch.Tensor
    task: torch.Tensor
    mask: torch.Tensor
    grad: torch.Tensor


def _track_task_grad(owner: nn.Module, name: str, n_tasks: int, index: int, grad: torch.Tensor) -> None:
    """Accumulate one task's gradient into row ``index`` of ``owner._task_grads[name]`` (T, *shape)."""
    if not owner.track_per_task_grads:
        return
    acc = owner._task_grads[name]
    if acc is None:
        acc = owner._task_grads[name] = grad.new_zeros((n_tasks, *grad.shape))
    acc[index] += grad


def _set_split_grads(owner: nn.Module, name: str, shared: torch.Tensor, task: torch.Tensor,
                     mask: torch.Tensor, g_task: torch.Tensor | None, g_shared: torch.Tensor | None) -> None:
    """Write ``.grad`` of ``shared`` and ``task`` from the gradient w.r.t. the effective values,
    exactly as autograd through ``where(mask, task, shared)`` / ``shared.expand`` would after
    ``zero_grad(set_to_none=False)``: shared gets the sum over tasks of its unsplit entries, task
    its split entries (zero elsewhere); ``task`` stays out of it (``.grad`` untouched if None,
    zeroed otherwise) when nothing is split. ``g_task``: (T, *shape) per-task gradient, or None
    with ``g_shared`` the already summed gradient (nothing split, not tracked). Per-task gradients
    are accumulated into ``owner._task_grads[name]`` when tracking is on."""
    if g_task is not None and owner.track_per_task_grads:
        acc = owner._task_grads[name]
        owner._task_grads[name] = g_task.clone() if acc is None else acc.add_(g_task)
    split, not_mask = _mask_state(mask)
    if not split:
        shared.grad = g_task.sum(0) if g_shared is None else g_shared
        if task.grad is not None:
            task.grad.zero_()
        return
    shared.grad = g_task.masked_fill(mask, 0.0).sum(0)
    task.grad = g_task.masked_fill(not_mask, 0.0)


def _track(owner: nn.Module, name: str, eff: torch.Tensor) -> torch.Tensor:
    """Register a hook accumulating d(loss)/d(eff) (T, *shape) into ``owner._task_grads[name]``."""
    if owner.track_per_task_grads and torch.is_grad_enabled() and eff.requires_grad:
        def hook(grad: torch.Tensor) -> None:
            acc = owner._task_grads[name]
            g = grad.detach()
            owner._task_grads[name] = g.clone() if acc is None else acc + g
        eff.register_hook(hook)
    return eff


class SplitLinear(nn.Module):
    """Affine layer with per-entry split mask. ``forward(x (T,B,in)) -> (T,B,out)``.

    Parameters: ``weight_shared (in,out)``, ``weight_task (T,in,out)``, ``bias_shared (out,)``,
    ``bias_task (T,out)``; buffers ``weight_mask (in,out)`` and ``bias_mask (out,)`` (bool).
    Init: ``init`` ('normc' or 'orthogonal') weights with ``gain``, zero biases, per-task copies
    equal to the shared values.
    """

    def __init__(self, n_tasks: int, in_dim: int, out_dim: int, gain: float = 1.0, init: str = "normc"):
        super().__init__()
        if n_tasks < 1 or in_dim < 1 or out_dim < 1:
            raise ValueError(f"n_tasks, in_dim, out_dim must be >= 1, got {n_tasks}, {in_dim}, {out_dim}")
        _check_init(init)
        self.n_tasks, self.in_dim, self.out_dim = n_tasks, in_dim, out_dim
        w = _INITIALIZERS[init](torch.empty(in_dim, out_dim), gain)
        b = torch.zeros(out_dim)
        self.weight_shared = nn.Parameter(w.clone())
        self.weight_task = nn.Parameter(w.expand(n_tasks, in_dim, out_dim).clone())
        self.bias_shared = nn.Parameter(b.clone())
        self.bias_task = nn.Parameter(b.expand(n_tasks, out_dim).clone())
        self.register_buffer("weight_mask", torch.zeros(in_dim, out_dim, dtype=torch.bool))
        self.register_buffer("bias_mask", torch.zeros(out_dim, dtype=torch.bool))
        self.track_per_task_grads = True
        self._task_grads: dict[str, torch.Tensor | None] = {"weight": None, "bias": None}

    # entries of this layer: local name -> (shared, task, mask buffer name)
    def _entries(self):
        return {
            "weight": (self.weight_shared, self.weight_task, "weight_mask"),
            "bias": (self.bias_shared, self.bias_task, "bias_mask"),
        }

    def effective_weight(self) -> torch.Tensor:
        """(T, in, out) weights each task uses."""
        return _effective(self.weight_shared, self.weight_task, self.weight_mask)

    def effective_bias(self) -> torch.Tensor:
        """(T, out) biases each task uses."""
        return _effective(self.bias_shared, self.bias_task, self.bias_mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[0] != self.n_tasks or x.shape[2] != self.in_dim:
            raise ValueError(
                f"expected input (T={self.n_tasks}, B, in={self.in_dim}), got {tuple(x.shape)}")
        w = _track(self, "weight", self.effective_weight())
        b = _track(self, "bias", self.effective_bias())
        return torch.baddbmm(b.unsqueeze(1), x, w)


class _SplitModule(nn.Module):
    """Common mask / per-task-gradient API over a set of named logical entries."""

    def _named_entries(self) -> dict[str, tuple[nn.Module, str]]:
        """name -> (owner module with shared/task/mask, local entry name)."""
        raise NotImplementedError

    def _entry_tensors(self, owner, local):
        if isinstance(owner, SplitLinear):
            shared, task, mask_name = owner._entries()[local]
        else:
            shared, task, mask_name = owner._split_entry()
        return shared, task, mask_name

    def param_shapes(self) -> dict[str, torch.Size]:
        """Logical shape of each named entry (what ``random_split_masks`` needs)."""
        return {n: self._entry_tensors(o, l)[0].shape for n, (o, l) in self._named_entries().items()}

    def n_params(self) -> int:
        """Number of logical entries |θ| (weights + biases [+ log-std]), each counted once."""
        return sum(math.prod(s) for s in self.param_shapes().values())

    def split_masks(self) -> dict[str, torch.Tensor]:
        """Copies of the boolean split masks keyed by stable name (True = per-task)."""
        out = {}
        for n, (o, l) in self._named_entries().items():
            _, _, mname = self._entry_tensors(o, l)
            out[n] = getattr(o, mname).clone()
        return out

    @torch.no_grad()
    def set_split_masks(self, masks: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer | None = None) -> None:
        """Install new split masks.

        ``masks`` must have exactly the names of :meth:`split_masks`, each a bool tensor of the
        entry's shape. Entries that become split get their per-task copies set to the current
        shared value (per-task copies start from the joint values). Entries that become shared
        again get the mean over tasks of their per-task values (not used by the algorithm).

        If ``optimizer`` (Adam/AdamW) is given, newly split entries also inherit the shared
        entry's Adam moments (``exp_avg``, ``exp_avg_sq``) so Adam state carries over; see
        :func:`copy_adam_state_to_split`.
        """
        entries = self._named_entries()
        missing = sorted(set(entries) - set(masks))
        unknown = sorted(set(masks) - set(entries))
        if missing or unknown:
            raise ValueError(f"split masks: missing names {missing}, unknown names {unknown}")
        for n, m in masks.items():
            shared, _, _ = self._entry_tensors(*entries[n])
            if not isinstance(m, torch.Tensor) or m.dtype != torch.bool:
                raise ValueError(f"split mask {n!r} must be a torch.bool tensor, got "
                                 f"{getattr(m, 'dtype', type(m))}")
            if m.shape != shared.shape:
                raise ValueError(f"split mask {n!r} has shape {tuple(m.shape)}, expected {tuple(shared.shape)}")
        newly = {}
        for n, m in masks.items():
            owner, local = entries[n]
            shared, task, mname = self._entry_tensors(owner, local)
            old = getattr(owner, mname)
            m = m.to(old.device)
            became_split = m & ~old
            became_shared = old & ~m
            task.copy_(torch.where(became_split, shared.expand_as(task), task))
            shared.copy_(torch.where(became_shared, task.mean(dim=0), shared))
            old.copy_(m)
            newly[n] = became_split
        if optimizer is not None:
            copy_adam_state_to_split(optimizer, self, newly)

    def per_task_grads(self) -> dict[str, torch.Tensor]:
        """name -> (T, *shape) gradient w.r.t. each task's effective entry, accumulated over the
        backward passes since the last :meth:`zero_per_task_grads`. Raises if none recorded."""
        out = {}
        for n, (o, l) in self._named_entries().items():
            g = o._task_grads[l]
            if g is None:
                raise RuntimeError(
                    f"no per-task gradient recorded for {n!r}: run a grad-enabled forward and a "
                    "backward pass first (and keep track_per_task_grads=True)")
            out[n] = g.clone()
        return out

    def zero_per_task_grads(self) -> None:
        """Reset the per-task gradient accumulators."""
        for o, l in self._named_entries().values():
            o._task_grads[l] = None

    def zero_grad(self, set_to_none: bool = True) -> None:  # noqa: D401
        """``nn.Module.zero_grad`` that also resets the per-task gradient accumulators."""
        super().zero_grad(set_to_none=set_to_none)
        self.zero_per_task_grads()

    def set_track_per_task_grads(self, flag: bool) -> None:
        """Turn the per-task gradient hooks on/off (off saves a little time when not scoring)."""
        for o, _ in self._named_entries().values():
            o.track_per_task_grads = bool(flag)

    def snapshot_values(self) -> dict[str, torch.Tensor]:
        """Copies of every entry's values: ``{name}/shared`` (*shape) and ``{name}/task``
        (T, *shape), the per-task EFFECTIVE values (what each task uses now)."""
        out = {}
        for n, (o, l) in self._named_entries().items():
            shared, task, mname = self._entry_tensors(o, l)
            out[f"{n}/shared"] = shared.detach().clone()
            out[f"{n}/task"] = _effective(shared, task, getattr(o, mname)).detach().clone()
        return out

    @torch.no_grad()
    def restore_values(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Set the values saved by :meth:`snapshot_values`; the split masks stay as they are, so an
        entry split since the snapshot takes each task's snapshotted effective value."""
        for n, (o, l) in self._named_entries().items():
            shared, task, _ = self._entry_tensors(o, l)
            shared.copy_(snapshot[f"{n}/shared"])
            task.copy_(snapshot[f"{n}/task"])

    def effective_params(self) -> dict[str, torch.Tensor]:
        """name -> (T, *shape) effective values (detached copies), e.g. for tests / export."""
        out = {}
        for n, (o, l) in self._named_entries().items():
            shared, task, mname = self._entry_tensors(o, l)
            out[n] = _effective(shared, task, getattr(o, mname)).detach().clone()
        return out


class SplitMLP(_SplitModule):
    """MLP with split masks. ``forward(x (T,B,in)) -> (T,B,out)``.

    Hidden layers use ``activation`` (tanh); the output layer is linear. Init: ``init`` ('normc' or
    'orthogonal') with ``hidden_gain`` for hidden layers and ``out_gain`` for the output layer, zero
    biases.
    Entry names: ``"{i}.weight"``, ``"{i}.bias"`` for layer ``i`` (0-based), optionally prefixed.
    """

    def __init__(self, n_tasks: int, in_dim: int, out_dim: int, hidden: Sequence[int] = (64, 64, 64),
                 activation: Callable[[torch.Tensor], torch.Tensor] = fast_tanh,
                 hidden_gain: float = 1.0, out_gain: float = 0.01, prefix: str = "", init: str = "normc"):
        super().__init__()
        hidden = list(hidden)
        if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty sequence of layer widths >= 1, got {hidden}")
        self.n_tasks = n_tasks
        self.activation = activation
        self.prefix = prefix
        dims = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(
            SplitLinear(n_tasks, dims[i], dims[i + 1], hidden_gain if i < len(dims) - 2 else out_gain, init)
            for i in range(len(dims) - 1))

    def _named_entries(self):
        out = {}
        for i, layer in enumerate(self.layers):
            out[f"{self.prefix}{i}.weight"] = (layer, "weight")
            out[f"{self.prefix}{i}.bias"] = (layer, "bias")
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = self.activation(h)
        return h

    # -- training fast path: forward + hand-written backward, no autograd graph ----------------------
    @torch.no_grad()
    def train_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """``forward`` without autograd, keeping what :meth:`train_backward` needs (the training
        hot path). Returns ``(out (T,B,out), cache)``. A layer with nothing split runs as one
        ``(T*B, in) @ (in, out)`` matmul, a split one as a ``baddbmm`` over the task axis. The
        activation must be tanh (``fast_tanh`` or ``torch.tanh``)."""
        if self.activation not in (fast_tanh, torch.tanh):
            raise ValueError("train_forward supports the tanh activation only")
        T, B = x.shape[0], x.shape[1]
        n = len(self.layers)
        hs, params = [x], []
        h = x
        for i, layer in enumerate(self.layers):
            if x.dim() != 3 or h.shape[0] != self.n_tasks or h.shape[2] != layer.in_dim:
                raise ValueError(f"expected input (T={self.n_tasks}, B, in={layer.in_dim}), got {tuple(h.shape)}")
            w, w_split = _train_params(layer.weight_shared, layer.weight_task, layer.weight_mask)
            b, b_split = _train_params(layer.bias_shared, layer.bias_task, layer.bias_mask)
            if w_split:
                z = torch.baddbmm((b if b_split else b.expand(T, -1)).unsqueeze(1), h, w)
            elif b_split:
                z = torch.baddbmm(b.unsqueeze(1), h, w.expand(T, *w.shape))
            else:
                z = torch.addmm(b, h.reshape(T * B, -1), w).view(T, B, -1)
            params.append((w, w_split))
            if i < n - 1:
                zn = z.numpy()
                np.tanh(zn, out=zn)  # NumPy's float32 tanh, in place (see _NumpyTanh)
                h = z
                hs.append(h)
        return z, (hs, params)

    @torch.no_grad()
    def train_backward(self, cache: tuple, grad_out: torch.Tensor) -> None:
        """Backward of :meth:`train_forward` for d(loss)/d(out) = ``grad_out`` (T,B,out). SETS the
        parameters' ``.grad`` (as ``zero_grad(set_to_none=False)`` + ``loss.backward()`` would) and
        accumulates per-task gradients w.r.t. the effective entries like the forward hooks do."""
        hs, params = cache
        T, B = grad_out.shape[0], grad_out.shape[1]
        g = grad_out
        for i in range(len(self.layers) - 1, -1, -1):
            layer, h, (w, w_split) = self.layers[i], hs[i], params[i]
            per_task = (w_split or layer.track_per_task_grads
                        or _mask_state(layer.bias_mask)[0])
            if per_task:
                gw = torch.bmm(h.transpose(1, 2), g)
                gb = g.sum(1)
                _set_split_grads(layer, "weight", layer.weight_shared, layer.weight_task, layer.weight_mask, gw, None)
                _set_split_grads(layer, "bias", layer.bias_shared, layer.bias_task, layer.bias_mask, gb, None)
            else:
                g2 = g.reshape(T * B, -1)
                _set_split_grads(layer, "weight", layer.weight_shared, layer.weight_task, layer.weight_mask,
                                 None, torch.mm(h.reshape(T * B, -1).t(), g2))
                _set_split_grads(layer, "bias", layer.bias_shared, layer.bias_task, layer.bias_mask,
                                 None, g2.sum(0))
            if i > 0:
                if w_split:
                    dh = torch.bmm(g, w.transpose(1, 2))
                else:
                    dh = torch.mm(g.reshape(T * B, -1), w.t()).view(T, B, -1)
                g = torch.ops.aten.tanh_backward(dh, h)


    @torch.no_grad()
    def train_forward_task(self, x: torch.Tensor, task: int) -> tuple[torch.Tensor, tuple]:
        """:meth:`train_forward` for ONE task's samples: ``x (B, in) -> (B, out)`` with task
        ``task``'s effective weights (the authors' optimiser steps the tasks one at a time)."""
        if self.activation not in (fast_tanh, torch.tanh):
            raise ValueError("train_forward_task supports the tanh activation only")
        if x.dim() != 2 or x.shape[1] != self.layers[0].in_dim:
            raise ValueError(f"expected input (B, in={self.layers[0].in_dim}), got {tuple(x.shape)}")
        if not 0 <= task < self.n_tasks:
            raise ValueError(f"task index {task} outside [0, {self.n_tasks})")
        n = len(self.layers)
        hs, weights = [x], []
        h = x
        for i, layer in enumerate(self.layers):
            w = _task_value(layer.weight_shared, layer.weight_task, layer.weight_mask, task)
            b = _task_value(layer.bias_shared, layer.bias_task, layer.bias_mask, task)
            z = torch.addmm(b, h, w)
            weights.append(w)
            if i < n - 1:
                zn = z.numpy()
                np.tanh(zn, out=zn)
                h = z
                hs.append(h)
        return z, (hs, weights, task)

    @torch.no_grad()
    def train_backward_task(self, cache: tuple, grad_out: torch.Tensor) -> list[EntryGrad]:
        """Backward of :meth:`train_forward_task` for d(loss)/d(out) = ``grad_out`` (B, out).
        Returns the task's gradient for every entry (``.grad`` is not touched) and accumulates
        it into row ``task`` of the per-task gradients when tracking."""
        hs, weights, task = cache
        out: list[EntryGrad] = []
        g = grad_out
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            gw = torch.mm(hs[i].t(), g)
            gb = g.sum(0)
            out.append(EntryGrad(layer.weight_shared, layer.weight_task, layer.weight_mask, gw))
            out.append(EntryGrad(layer.bias_shared, layer.bias_task, layer.bias_mask, gb))
            _track_task_grad(layer, "weight", self.n_tasks, task, gw)
            _track_task_grad(layer, "bias", self.n_tasks, task, gb)
            if i > 0:
                g = torch.ops.aten.tanh_backward(torch.mm(g, weights[i].t()), hs[i])
        return out


class _SplitLogStd(nn.Module):
    """State-independent log-std: shared (A,), per-task (T,A), mask (A,). Init 0."""

    def __init__(self, n_tasks: int, act_dim: int):
        super().__init__()
        self.log_std_shared = nn.Parameter(torch.zeros(act_dim))
        self.log_std_task = nn.Parameter(torch.zeros(n_tasks, act_dim))
        self.register_buffer("log_std_mask", torch.zeros(act_dim, dtype=torch.bool))
        self.track_per_task_grads = True
        self._task_grads: dict[str, torch.Tensor | None] = {"log_std": None}

    def _split_entry(self):
        return self.log_std_shared, self.log_std_task, "log_std_mask"

    def forward(self) -> torch.Tensor:
        """(T, A) effective log-std."""
        eff = _effective(self.log_std_shared, self.log_std_task, self.log_std_mask)
        return _track(self, "log_std", eff)


class SplitGaussianPolicy(_SplitModule):
    """Diagonal Gaussian policy; mean = :class:`SplitMLP` (``hidden`` tanh layers, default 3×64;
    ``init`` 'normc' gains 1.0 / 0.01 or 'orthogonal' sqrt(2) / 0.01), state-independent log-std
    (init 0). Entry names: ``mean.{i}.weight``, ``mean.{i}.bias``, ``log_std``."""

    def __init__(self, n_tasks: int, obs_dim: int, act_dim: int, hidden: Sequence[int] = (64, 64, 64),
                 init: str = "normc"):
        super().__init__()
        _check_init(init)
        self.n_tasks, self.obs_dim, self.act_dim = n_tasks, obs_dim, act_dim
        hidden_gain, out_gain, _ = INIT_GAINS[init]
        self.mean = SplitMLP(n_tasks, obs_dim, act_dim, hidden, hidden_gain=hidden_gain, out_gain=out_gain,
                             prefix="mean.", init=init)
        self.log_std = _SplitLogStd(n_tasks, act_dim)

    def _named_entries(self):
        out = self.mean._named_entries()
        out["log_std"] = (self.log_std, "log_std")
        return out

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (T,B,obs_dim) -> deterministic action (T,B,A)."""
        return self.mean(obs)

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Normal:
        """obs (T,B,obs_dim) -> Normal with loc (T,B,A) and scale (T,B,A)."""
        mu = self.mean(obs)
        std = self.log_std().exp().unsqueeze(1).expand_as(mu)
        return torch.distributions.Normal(mu, std, validate_args=False)

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """obs (T,B,obs_dim), act (T,B,A) -> log-density (T,B), summed over action dims."""
        return self.distribution(obs).log_prob(act).sum(-1)

    def forward(self, obs: torch.Tensor) -> torch.distributions.Normal:
        return self.distribution(obs)

    # -- training fast path ------------------------------------------------------------------------
    _LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))

    @torch.no_grad()
    def train_log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """:meth:`log_prob` without autograd (same formula as ``Normal.log_prob``), plus the cache
        :meth:`train_backward` needs. Returns ``(log_prob (T,B), cache)``."""
        mu, mlp_cache = self.mean.train_forward(obs)
        ls = self.log_std
        log_std, _ = _train_params(ls.log_std_shared, ls.log_std_task, ls.log_std_mask)
        scale = log_std.exp().expand(self.n_tasks, -1).unsqueeze(1)  # (T, 1, A)
        var = scale**2
        diff = act - mu
        sq = diff**2
        logp = (-sq / (2 * var) - scale.log() - self._LOG_SQRT_2PI).sum(-1)
        return logp, (mlp_cache, diff, sq, var)

    @torch.no_grad()
    def train_backward(self, cache: tuple, grad_log_prob: torch.Tensor,
                       grad_log_std: float = 0.0) -> None:
        """Backward of :meth:`train_log_prob` for d(loss)/d(log_prob) = ``grad_log_prob`` (T,B),
        plus a constant ``grad_log_std`` added to every task's d(loss)/d(log-std) (an entropy
        bonus). Sets ``.grad`` of all policy parameters and accumulates per-task gradients (when
        tracking) exactly as ``loss.backward()`` through :meth:`log_prob` with the hooks would."""
        mlp_cache, diff, sq, var = cache
        g = grad_log_prob.unsqueeze(-1)  # (T, B, 1)
        # d logp / d mu = (a - mu) / var;  d logp / d log_std = (a - mu)^2 / var - 1
        g_log_std = torch.bmm(grad_log_prob.unsqueeze(1), sq).squeeze(1) / var.squeeze(1) \
            - grad_log_prob.sum(1, keepdim=True)
        if grad_log_std:
            g_log_std = g_log_std + grad_log_std
        ls = self.log_std
        _set_split_grads(ls, "log_std", ls.log_std_shared, ls.log_std_task, ls.log_std_mask, g_log_std, None)
        self.mean.train_backward(mlp_cache, g * diff / var)


    @torch.no_grad()
    def train_log_prob_task(self, obs: torch.Tensor, act: torch.Tensor, task: int) -> tuple[torch.Tensor, tuple]:
        """:meth:`train_log_prob` for ONE task: ``obs (B, obs_dim)``, ``act (B, A)`` ->
        ``(log_prob (B,), cache)`` with task ``task``'s effective parameters."""
        mu, mlp_cache = self.mean.train_forward_task(obs, task)
        ls = self.log_std
        scale = _task_value(ls.log_std_shared, ls.log_std_task, ls.log_std_mask, task).exp()  # (A,)
        var = scale**2
        diff = act - mu
        sq = diff**2
        logp = (-sq / (2 * var) - scale.log() - self._LOG_SQRT_2PI).sum(-1)
        return logp, (mlp_cache, diff, sq, var, task)

    @torch.no_grad()
    def train_backward_task(self, cache: tuple, grad_log_prob: torch.Tensor,
                            grad_log_std: float = 0.0) -> list[EntryGrad]:
        """Backward of :meth:`train_log_prob_task` for d(loss)/d(log_prob) = ``grad_log_prob``
        (B,), plus ``grad_log_std`` added to d(loss)/d(log-std). Returns the task's gradient for
        every policy entry (see :meth:`SplitMLP.train_backward_task`)."""
        mlp_cache, diff, sq, var, task = cache
        g_log_std = (grad_log_prob @ sq) / var - grad_log_prob.sum()
        if grad_log_std:
            g_log_std = g_log_std + grad_log_std
        ls = self.log_std
        _track_task_grad(ls, "log_std", self.n_tasks, task, g_log_std)
        grads = self.mean.train_backward_task(mlp_cache, grad_log_prob.unsqueeze(-1) * diff / var)
        grads.append(EntryGrad(ls.log_std_shared, ls.log_std_task, ls.log_std_mask, g_log_std))
        return grads


class SplitValue(_SplitModule):
    """State-value network (``hidden`` tanh layers, default 3×64; ``init`` 'normc' gains 1.0 hidden /
    1.0 output as baselines' value head, or 'orthogonal' sqrt(2) / 1.0 as SB3's).
    ``forward(obs (T,B,obs_dim)) -> (T,B)``. Entry names: ``value.{i}.weight``, ``value.{i}.bias``."""

    def __init__(self, n_tasks: int, obs_dim: int, hidden: Sequence[int] = (64, 64, 64), init: str = "normc"):
        super().__init__()
        _check_init(init)
        self.n_tasks, self.obs_dim = n_tasks, obs_dim
        hidden_gain, _, out_gain = INIT_GAINS[init]
        self.net = SplitMLP(n_tasks, obs_dim, 1, hidden, hidden_gain=hidden_gain, out_gain=out_gain,
                            prefix="value.", init=init)

    def _named_entries(self):
        return self.net._named_entries()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)

    def train_forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """:meth:`forward` without autograd; ``(values (T,B), cache)`` for :meth:`train_backward`."""
        v, cache = self.net.train_forward(obs)
        return v.squeeze(-1), cache

    def train_backward(self, cache: tuple, grad_values: torch.Tensor) -> None:
        """Sets ``.grad`` for d(loss)/d(values) = ``grad_values`` (T,B); see SplitMLP.train_backward."""
        self.net.train_backward(cache, grad_values.unsqueeze(-1))


    def train_forward_task(self, obs: torch.Tensor, task: int) -> tuple[torch.Tensor, tuple]:
        """:meth:`train_forward` for ONE task: ``obs (B, obs_dim)`` -> ``(values (B,), cache)``."""
        v, cache = self.net.train_forward_task(obs, task)
        return v.squeeze(-1), cache

    def train_backward_task(self, cache: tuple, grad_values: torch.Tensor) -> list[EntryGrad]:
        """The task's gradient for every value entry, for d(loss)/d(values) = ``grad_values`` (B,)."""
        return self.net.train_backward_task(cache, grad_values.unsqueeze(-1))


@torch.no_grad()
def copy_adam_state_to_split(optimizer: torch.optim.Optimizer, model: _SplitModule,
                             newly_split: dict[str, torch.Tensor]) -> None:
    """Let newly split entries inherit the shared entry's Adam moments.

    For each name, at the entries where ``newly_split[name]`` is True, the per-task tensor's
    ``exp_avg``/``exp_avg_sq`` are set to the shared tensor's values (broadcast over tasks). If the
    per-task tensor has no Adam state yet (it was never in the graph during the joint phase), the
    state is created with the shared tensor's ``step`` and zero moments elsewhere. No-op for
    entries whose shared tensor has no state yet.
    """
    entries = model._named_entries()
    for n, sel in newly_split.items():
        if not bool(sel.any()):
            continue
        shared, task, _ = model._entry_tensors(*entries[n])
        s_state = optimizer.state.get(shared)
        if not s_state or "exp_avg" not in s_state:
            continue
        t_state = optimizer.state[task]
        if "exp_avg" not in t_state:
            t_state["step"] = s_state["step"].clone() if torch.is_tensor(s_state["step"]) else s_state["step"]
            t_state["exp_avg"] = torch.zeros_like(task, memory_format=torch.preserve_format)
            t_state["exp_avg_sq"] = torch.zeros_like(task, memory_format=torch.preserve_format)
            if "max_exp_avg_sq" in s_state:
                t_state["max_exp_avg_sq"] = torch.zeros_like(task, memory_format=torch.preserve_format)
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            if key in s_state and key in t_state:
                t_state[key].copy_(torch.where(sel, s_state[key].expand_as(task), t_state[key]))
