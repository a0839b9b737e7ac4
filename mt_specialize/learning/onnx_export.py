"""A checkpoint's policy as one ONNX graph, for deployment without Python (onnxruntime in C++, a
ros2_control controller), and :class:`OnnxPolicy`, which serves such a file (the policy server).

The graph (opset 20, float64, exported by ``torch.onnx.export`` with the torch.export-based
exporter; needs the ``onnx`` extra: onnx, onnxscript, onnxruntime)::

    inputs   observation  float64 (robots, obs_dim)   raw observations, one row per robot
             task         int64   (robots,)           each row's task index (manifest "tasks")
    output   action       float64 (robots, act_dim)   the task's mean action (deterministic)

It computes exactly what ``InferencePolicy.act`` does: the task's observation normaliser
(``clip((obs - mean[task]) / std[task], -clip, clip)``, the one-hot task id appended where the
method has one), then the task's effective weights ``where(mask, W_task, W_shared)``, tanh hidden
layers, a linear output. A layer whose weights no task has split is stored once (a plain MatMul);
one with split entries as (T, in, out), gathered by ``task``.

The manifest (JSON) is stored in the model's metadata (key ``mt_specialize``) and written beside it
(``<out>.json``)::

    format         "mt_specialize/onnx-policy/1"
    tasks          task names, in index order
    obs_dim, act_dim, inputs, outputs
    profile        the robot physics its run trained on ("?" when not recorded)
    layout         per task, what the caller knows of its robot (``export_onnx(layout=...)``; the CLI
                   gives robot, engine, control_period_s, observation field names, actuators with gear
                   N*m: ``experiments.task_io``)
    config         the run's recorded settings; experiment, samples, source

Exported with torch.onnx rather than assembled by hand: the exporter is torch's own and maintained
with it; the graph is checked against ``InferencePolicy`` (test/test_onnx_export.py, 1e-5 and better).
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from .policy_file import (  # noqa: F401  (read_manifest: re-exported, the reading side of this format)
    INSTALL_HINT,
    ONNX_FORMAT as FORMAT,
    ONNX_METADATA_KEY as METADATA_KEY,
    PolicyFileError,
    checked_act_inputs,
    onnx_manifest,
    onnx_session,
    read_manifest,
)

OPSET = 20
INPUTS = ("observation", "task")
OUTPUT = "action"


def _graph_module(arrays: dict, n_tasks: int):
    """The torch module of the graph (float64) from ``InferencePolicy.forward_arrays()``."""
    import torch

    class PolicyGraph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.from_numpy(arrays["mean"]))
            self.register_buffer("std", torch.from_numpy(arrays["std"]))
            self.register_buffer("task_ids", torch.eye(n_tasks, dtype=torch.float64))
            self.clip = float(arrays["clip"])
            self.task_id = arrays["task_id"]
            self.split = []
            for k, (w, b) in enumerate(arrays["layers"]):
                # stored once if every task uses the same values (nothing split), else per task
                w_split, b_split = not (w == w[:1]).all(), not (b == b[:1]).all()
                self.register_buffer(f"w{k}", torch.from_numpy(w if w_split else w[0]))
                self.register_buffer(f"b{k}", torch.from_numpy(b if b_split else b[0]))
                self.split.append((w_split, b_split))

        def forward(self, observation, task):
            x = observation
            if self.task_id == "normalize":
                x = torch.cat([x, self.task_ids[task]], dim=-1)
            x = torch.clamp((x - self.mean[task]) / self.std[task], -self.clip, self.clip)
            if self.task_id == "append":
                x = torch.cat([x, self.task_ids[task]], dim=-1)
            last = len(self.split) - 1
            for k, (w_split, b_split) in enumerate(self.split):
                w, b = getattr(self, f"w{k}"), getattr(self, f"b{k}")
                x = torch.bmm(x.unsqueeze(1), w[task]).squeeze(1) if w_split else x @ w
                x = x + (b[task] if b_split else b)
                if k != last:
                    x = torch.tanh(x)
            return x

    return PolicyGraph().eval()


def export_onnx(policy, out: str | Path, layout: dict | None = None, source: str = "",
                metadata: dict | None = None) -> tuple[Path, Path]:
    """Write ``policy`` (an ``InferencePolicy``) as the graph above to ``out`` (``.onnx``) and its
    manifest to ``out`` with suffix ``.json``; returns both paths. ``layout``: task -> what is known
    of its robot (stored as is); ``metadata``: more manifest entries (experiment, samples, ...)."""
    try:
        import onnx
        import torch
    except ImportError as exc:
        raise ImportError(f"ONNX export needs {exc.name}: {INSTALL_HINT}") from None
    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"{out}: an ONNX export's file name ends in .onnx")
    names = list(policy.task_names)
    module = _graph_module(policy.forward_arrays(), len(names))
    example = (torch.zeros(2, policy.obs_dim, dtype=torch.float64), torch.tensor([0, len(names) - 1]))
    robots = torch.export.Dim("robots")
    with warnings.catch_warnings(), _quiet("torch.onnx", "torch.export", "torch._dynamo"):
        warnings.simplefilter("ignore")  # the exporter's notes on unused axis names, deprecations
        program = torch.onnx.export(module, example, dynamo=True, opset_version=OPSET, verbose=False,
                                    input_names=list(INPUTS), output_names=[OUTPUT],
                                    dynamic_shapes={"observation": {0: robots}, "task": {0: robots}})
    model = program.model_proto
    config = dict(getattr(policy, "run_config", {}) or {})
    manifest = {
        "format": FORMAT,
        "tasks": names,
        "obs_dim": int(policy.obs_dim),
        "act_dim": int(policy.act_dim),
        "inputs": {"observation": {"dtype": "float64", "shape": ["robots", int(policy.obs_dim)]},
                   "task": {"dtype": "int64", "shape": ["robots"], "meaning": "index into tasks"}},
        "outputs": {OUTPUT: {"dtype": "float64", "shape": ["robots", int(policy.act_dim)],
                             "meaning": "mean action per actuator, normalized (the simulator clips it to "
                                        "[-1, 1]; effort = gear * clip(action, -1, 1))"}},
        "profile": str(config.get("profile", "none")) if config else "?",
        "layout": layout or {},
        "experiment": getattr(policy, "experiment", ""),
        "source": source or getattr(policy, "source", ""),
        **(metadata or {}),
        "config": config,
    }
    text = json.dumps(manifest, indent=1, sort_keys=False)
    del model.metadata_props[:]
    model.metadata_props.add(key=METADATA_KEY, value=text)
    model.producer_name = "mt_specialize"
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(out))
    manifest_path = out.with_suffix(".json")
    manifest_path.write_text(text + "\n")
    return out, manifest_path


class _quiet:
    """Raise the level of these loggers to ERROR for a ``with`` block (the exporter logs notes such
    as "torchvision is not installed" as warnings)."""

    def __init__(self, *names: str):
        self.loggers = [logging.getLogger(n) for n in names]

    def __enter__(self):
        self.levels = [lg.level for lg in self.loggers]
        for lg in self.loggers:
            lg.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        for lg, level in zip(self.loggers, self.levels):
            lg.setLevel(level)


class OnnxPolicy:
    """An exported ONNX policy run by onnxruntime, with ``InferencePolicy``'s serving interface:
    ``task_names``, ``obs_dim``, ``act_dim``, ``run_config``, ``task_index(name)``,
    ``act(obs (R, obs_dim), task_index (R,)) -> (R, act_dim)`` float64. ``manifest``: the file's."""

    def __init__(self, path: str | Path):
        self.source = str(path)
        path = Path(path)
        if not path.is_file():
            raise PolicyFileError(f"ONNX policy {str(path)!r}: file not found")
        self._session = onnx_session(path)
        self.manifest = onnx_manifest(self._session, path)
        self.task_names: list[str] = list(self.manifest["tasks"])
        self.obs_dim = int(self.manifest["obs_dim"])
        self.act_dim = int(self.manifest["act_dim"])
        self.run_config = dict(self.manifest.get("config") or {})
        self.experiment = str(self.manifest.get("experiment", ""))

    @classmethod
    def from_file(cls, path: str | Path) -> "OnnxPolicy":
        return cls(path)

    def task_index(self, name: str) -> int:
        try:
            return self.task_names.index(name)
        except ValueError:
            raise ValueError(f"unknown task {name!r}; this policy serves {self.task_names}") from None

    def act(self, obs: np.ndarray, task_index: Sequence[int] | np.ndarray) -> np.ndarray:
        """obs (R, obs_dim), task_index (R,) ints -> mean actions (R, act_dim), float64."""
        obs, task_index = checked_act_inputs(obs, task_index, self.obs_dim, len(self.task_names))
        return self._session.run([OUTPUT], {INPUTS[0]: obs, INPUTS[1]: task_index})[0]
