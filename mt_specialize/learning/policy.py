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

Gradients
---------
Because of the ``where``, autograd gives a *shared* entry of ``W_shared`` the **sum of all tasks'
gradients** and a *split* entry of ``W_task[i]`` **only task i's gradient**; the halves not used
(entries of ``W_shared`` that are split, entries of ``W_task`` that are shared) get zero. When
nothing is split (all masks False, the joint phase) ``W_task`` is not part of the graph at all.

Per-task gradients
------------------
During every grad-enabled forward, hooks are registered on the effective tensors (shape
``(T, *shape)``). Their gradients are **accumulated** (like ``.grad``) into per-module buffers
until :meth:`zero_per_task_grads` (also called by ``module.zero_grad()``). If the loss is a *sum*
of per-task terms, ``per_task_grads()[name][i]`` is exactly task i's own gradient w.r.t. its
effective parameter.

These modules are a run's networks as the rollout, the policy server, ONNX export and checkpoints
see them, and the autograd reference of the update (``ppo_update.task_losses``). Training runs on
their batched form (:mod:`mt_specialize.learning.multi`, which gives the same gradients by hand
without autograd); while a run trains, its modules' tensors are views of its slot there.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

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
    def set_split_masks(self, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Install new split masks; returns ``{name: bool mask of the entries that became split}``.

        ``masks`` must have exactly the names of :meth:`split_masks`, each a bool tensor of the
        entry's shape. Entries that become split get their per-task copies set to the current
        shared value (per-task copies start from the joint values). Entries that become shared
        again get the mean over tasks of their per-task values (not used by the algorithm). The
        trainer then lets newly split entries inherit Adam's moments (``optim.MultiAdam.copy_state_to_split``).
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
        return newly

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
