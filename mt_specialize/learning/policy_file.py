"""What a policy file says about itself, read without loading its weights (no torch import).

For the checks that run before any node starts (the ROS launch file, ``mt-specialize up``), which must
not wait seconds for torch: the tasks, the observation and action sizes and the recorded run settings
(profile, physics) of

* a checkpoint (``learning.checkpoint``: safetensors whose header holds the metadata; its digest is
  verified when the weights are loaded, not here), or
* an ONNX export (``learning.onnx_export``: the manifest in the model's metadata; needs onnxruntime).

The reading side of both formats is here, so that the launch checks need neither torch nor the exporter.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

#: The ``format`` tag in a checkpoint's safetensors header (``learning.checkpoint.FORMAT``).
CHECKPOINT_FORMAT = "mt_specialize-checkpoint-v1"
#: Longest header read (a checkpoint's JSON header is a few kB; a bigger one is not ours).
MAX_HEADER_BYTES = 64 << 20
#: The ``format`` of an ONNX export's manifest, and its key in the model's metadata (``onnx_export``).
ONNX_FORMAT = "mt_specialize/onnx-policy/1"
ONNX_METADATA_KEY = "mt_specialize"
INSTALL_HINT = "pip install mt_specialize[onnx] (onnx, onnxscript, onnxruntime)"


class PolicyFileError(ValueError):
    """A policy file that is missing, unreadable or not one of ours; the message names it."""


@dataclass
class PolicyFileInfo:
    """``kind``: ``checkpoint`` | ``onnx``; ``task_names`` in the policy's task order; ``obs_dim``,
    ``act_dim``; ``run_config``: the settings of the run that trained it ({} if not recorded)."""

    path: Path
    kind: str
    task_names: list[str]
    obs_dim: int
    act_dim: int
    run_config: dict = field(default_factory=dict)

    @property
    def profile(self) -> str:
        """The profile its run trained on: the recorded one, ``none`` for a run older than profiles,
        ``?`` when no run settings are recorded (a policy made by hand, e.g. in a test)."""
        return str(self.run_config.get("profile", "none")) if self.run_config else "?"



def checkpoint_metadata(path: str | Path) -> dict:
    """The metadata a checkpoint was saved with (its safetensors header), without the tensors."""
    path = Path(path)

    def fail(what: str) -> PolicyFileError:
        return PolicyFileError(f"checkpoint {str(path)!r}: {what}")

    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise fail(f"too short to be a safetensors file ({len(head)} bytes; truncated or empty)")
            n = struct.unpack("<Q", head)[0]
            if n > MAX_HEADER_BYTES:
                raise fail("not a safetensors file (its first 8 bytes claim a header of "
                           f"{n} bytes), e.g. a pickle or an ONNX file not named .onnx")
            raw = f.read(n)
    except FileNotFoundError:
        raise fail("file not found") from None
    except IsADirectoryError:
        raise fail("is a directory, not a file") from None
    except OSError as exc:
        raise fail(f"cannot be read ({exc.strerror or exc})") from None
    if len(raw) < n:
        raise fail(f"header claims {n} bytes but the file is shorter (truncated)")
    try:
        header = json.loads(raw.decode("utf-8"))
        meta = header.get("__metadata__") if isinstance(header, dict) else None
    except (UnicodeDecodeError, ValueError):
        raise fail("header is not valid safetensors JSON; corrupted or not a checkpoint") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT or "metadata" not in meta:
        raise fail(f"not an mt_specialize checkpoint (missing {CHECKPOINT_FORMAT!r} header metadata)")
    try:
        return json.loads(meta["metadata"])
    except ValueError as exc:
        raise fail(f"metadata is not valid JSON ({exc})") from None


def policy_file_info(path: str | Path) -> PolicyFileInfo:
    """:class:`PolicyFileInfo` of a checkpoint (``*.safetensors`` or any other name) or an ONNX
    export (``*.onnx``); :class:`PolicyFileError` naming the file and the problem otherwise."""
    path = Path(path)
    if path.suffix == ".onnx":
        manifest = read_manifest(path)
        return PolicyFileInfo(path, "onnx", list(manifest["tasks"]), int(manifest["obs_dim"]),
                              int(manifest["act_dim"]), dict(manifest.get("config") or {}))
    meta = checkpoint_metadata(path)
    try:
        return PolicyFileInfo(path, "checkpoint", [str(t) for t in meta["task_names"]], int(meta["obs_dim"]),
                              int(meta["act_dim"]), dict(meta.get("config") or {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise PolicyFileError(f"checkpoint {str(path)!r}: not a policy checkpoint (metadata lacks {exc})") from None


def onnx_session(path: Path):
    """An onnxruntime session of an ONNX file: CPU, one thread (a few small matmuls per call)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError(f"serving an ONNX policy needs onnxruntime: {INSTALL_HINT}") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a handful of small matmuls per call: threads only add latency
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types (file missing, not a model, ...)
        raise PolicyFileError(f"ONNX policy {str(path)!r}: cannot be loaded ({type(exc).__name__}: {exc})") from None


def onnx_manifest(session, path: Path) -> dict:
    """The mt_specialize manifest in an ONNX model's metadata (PolicyFileError if it has none)."""
    text = session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
    try:
        manifest = json.loads(text) if text else None
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != ONNX_FORMAT:
        raise PolicyFileError(f"ONNX policy {str(path)!r}: not an mt_specialize export (no {ONNX_FORMAT!r} manifest "
                              f"in its metadata)")
    return manifest


def read_manifest(path: str | Path) -> dict:
    """The manifest stored in an exported ONNX file (PolicyFileError if it is not one)."""
    path = Path(path)
    if not path.is_file():
        raise PolicyFileError(f"ONNX policy {str(path)!r}: file not found")
    return onnx_manifest(onnx_session(path), path)


def checked_act_inputs(obs, task_index, obs_dim: int, n_tasks: int) -> tuple[np.ndarray, np.ndarray]:
    """(obs (R, obs_dim) float64, task_index (R,) int64), both C-contiguous, from a policy's ``act``
    arguments; ValueError naming the shape or index that does not fit."""
    import numpy as np  # here: reading a policy file's header needs no NumPy

    obs = np.ascontiguousarray(obs, dtype=np.float64)
    task_index = np.ascontiguousarray(task_index, dtype=np.int64)
    if obs.ndim != 2 or obs.shape[1] != obs_dim:
        raise ValueError(f"obs must have shape (R, {obs_dim}), got {obs.shape}")
    if task_index.shape != (obs.shape[0],):
        raise ValueError(f"task_index must have shape ({obs.shape[0]},), got {task_index.shape}")
    if task_index.size and (task_index.min() < 0 or task_index.max() >= n_tasks):
        raise ValueError(f"task_index out of range [0, {n_tasks})")
    return obs, task_index
