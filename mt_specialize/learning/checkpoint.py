"""Atomic, verified, pickle-free checkpoints (safetensors + JSON metadata + SHA-256 digest).

File layout: a standard safetensors file whose header ``__metadata__`` holds

* ``format``: ``"mt_specialize-checkpoint-v1"``,
* ``metadata``: the caller's metadata as a JSON string,
* ``sha256``: hex digest over the format tag, the metadata string and, for every tensor in name
  order, its name, dtype, shape and raw bytes.

``save_checkpoint`` writes a temporary file in the target directory, flushes and fsyncs it,
``os.replace``-s it over the target (atomic on POSIX) and fsyncs the directory: a crash or an
exception leaves either the old file or the new one, never a mix. ``load_checkpoint`` never
unpickles anything (no ``torch.load``); any truncated, corrupted, tampered or foreign file raises
:class:`CheckpointError` naming the file and the problem. A failed write (e.g. a full disk) raises
the ``OSError`` with the target's name and leaves no temporary file.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from .policy_file import CHECKPOINT_FORMAT as FORMAT  # the header tag (policy_file reads it without torch)

__all__ = [
    "CheckpointError",
    "FORMAT",
    "save_checkpoint",
    "load_checkpoint",
    "optimizer_state_to_tensors",
    "optimizer_state_from_tensors",
    "add_prefix",
    "strip_prefix",
]


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, truncated, corrupted or not ours."""


def _digest(tensors: dict[str, torch.Tensor], metadata_json: str) -> str:
    h = hashlib.sha256()
    h.update(FORMAT.encode())
    h.update(struct.pack("<Q", len(metadata_json.encode())))
    h.update(metadata_json.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        head = json.dumps([name, str(t.dtype), list(t.shape)]).encode()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        h.update(struct.pack("<QQ", len(head), len(raw)))
        h.update(head)
        h.update(raw)
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> Path:
    """Atomically write ``tensors`` (name -> tensor, any dtype/device) and JSON-serialisable
    ``metadata`` to ``path``. Returns the path. An existing file is replaced only on success."""
    path = Path(path)
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        meta_json = json.dumps(metadata, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise TypeError(f"checkpoint metadata for {path} is not JSON-serialisable: {e}") from e
    clean = {}
    for name, t in tensors.items():
        if not isinstance(name, str) or not isinstance(t, torch.Tensor):
            raise TypeError(f"checkpoint tensors must be dict[str, Tensor]; bad entry {name!r}: {type(t).__name__}")
        clean[name] = t.detach().cpu().contiguous().clone()  # own storage: safetensors rejects shared memory
    header = {"format": FORMAT, "metadata": meta_json, "sha256": _digest(clean, meta_json)}
    data = _st_save(clean, metadata=header)

    directory = path.parent if str(path.parent) else Path(".")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:  # e.g. a read-only place, a file in the way: name the checkpoint
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:  # e.g. a full disk
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    _fsync_dir(directory)
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory fds
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify a checkpoint written by :func:`save_checkpoint`.

    Returns ``(tensors, metadata)`` (CPU tensors). Raises :class:`CheckpointError` (a
    ``ValueError``) naming ``path`` if it is missing, unreadable, not a safetensors file (e.g. a
    pickle), not an mt_specialize checkpoint, truncated, or its digest does not match.
    """
    path = Path(path)

    def fail(what: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {str(path)!r}: {what}")

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise fail("file not found") from None
    except OSError as e:
        raise fail(f"cannot be read ({e.strerror or e})") from None
    if len(data) < 8:
        raise fail(f"too short to be a safetensors file ({len(data)} bytes; truncated or empty)")
    n = struct.unpack("<Q", data[:8])[0]
    if 8 + n > len(data):
        raise fail(f"header claims {n} bytes but the file has {len(data)} bytes "
                   "(truncated, or not a safetensors file, e.g. a pickle)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (UnicodeDecodeError, ValueError) as e:
        raise fail(f"header is not valid safetensors JSON ({e}); corrupted or not a checkpoint") from None
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "sha256" not in meta or "metadata" not in meta:
        raise fail(f"not an mt_specialize checkpoint (missing {FORMAT!r} header metadata)")
    try:
        tensors = _st_load(data)
    except Exception as e:  # safetensors raises its own error types
        raise fail(f"tensor data is corrupted or truncated ({type(e).__name__}: {e})") from None
    digest = _digest(tensors, meta["metadata"])
    if digest != meta["sha256"]:
        raise fail("SHA-256 digest mismatch: the file was modified or corrupted after it was written")
    try:
        metadata = json.loads(meta["metadata"])
    except ValueError as e:
        raise fail(f"metadata is not valid JSON ({e})") from None
    return tensors, metadata


# ----------------------------------------------------------------------------- helpers

def add_prefix(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{prefix + name: tensor}`` (to put several state dicts in one checkpoint)."""
    return {prefix + k: v for k, v in tensors.items()}


def strip_prefix(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries whose name starts with ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _jsonable(value, where: str):
    if isinstance(value, torch.Tensor):
        raise TypeError(f"optimizer {where} is a tensor; only plain numbers are supported there")
    if isinstance(value, (tuple, list)):
        return [_jsonable(v, where) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"optimizer {where} has non-JSON value {value!r}")


def optimizer_state_to_tensors(state_dict: dict[str, Any], prefix: str = "optim.") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten ``optimizer.state_dict()`` (e.g. Adam) into tensors + JSON-able metadata.

    Tensors: ``{prefix}state.{param_id}.{key}`` (e.g. ``optim.state.3.exp_avg``). Metadata:
    ``param_groups`` (hyper-parameters; tuples such as ``betas`` recorded for restoration) and
    non-tensor per-parameter state values.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    keys: dict[str, list[str]] = {}
    for pid, st in state_dict["state"].items():
        keys[str(pid)] = list(st)
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{prefix}state.{pid}.{key}"] = val
            else:
                scalars.setdefault(str(pid), {})[key] = _jsonable(val, f"state[{pid}][{key!r}]")
    groups, tuple_keys = [], []
    for gi, g in enumerate(state_dict["param_groups"]):
        groups.append({k: _jsonable(v, f"param_groups[{gi}][{k!r}]") for k, v in g.items()})
        tuple_keys.append(sorted(k for k, v in g.items() if isinstance(v, tuple)))
    meta = {"param_groups": groups, "tuple_keys": tuple_keys, "state_keys": keys, "state_scalars": scalars}
    return tensors, meta


def optimizer_state_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                                 prefix: str = "optim.") -> dict[str, Any]:
    """Inverse of :func:`optimizer_state_to_tensors`; feed the result to
    ``optimizer.load_state_dict``. ``tensors`` may contain other (unrelated) entries."""
    try:
        state: dict[int, dict[str, Any]] = {}
        for pid, keys in meta["state_keys"].items():
            st = {}
            for key in keys:
                tname = f"{prefix}state.{pid}.{key}"
                if tname in tensors:
                    st[key] = tensors[tname]
                else:
                    st[key] = meta["state_scalars"][pid][key]
            state[int(pid)] = st
        groups = []
        for g, tkeys in zip(meta["param_groups"], meta["tuple_keys"]):
            g = dict(g)
            for k in tkeys:
                g[k] = tuple(g[k])
            groups.append(g)
    except (KeyError, TypeError) as e:
        raise ValueError(f"optimizer state in checkpoint is incomplete: missing {e}") from None
    return {"state": state, "param_groups": groups}
