"""Learner node: runs a training run (the core's ``train.run_training``) in a worker thread.

Parameters: every training setting of ``mt-specialize train`` under its own name (``config.SETTINGS``:
``experiment``, ``method``, ``joint_samples``, ``split_fraction``, ``seed``, ``samples``, ``profile``,
``task_switch_prob``, ...; ``ros2 param describe /learner NAME`` gives its help, allowed values and
default), and the paper's names ``jt`` and ``sp`` (either name, one value). A setting that may be null
(the method's, the experiment's or the profile's value) is null when its parameter is ``''`` (or -1).
Besides: ``out_dir`` (run directory; empty = ``runs/<experiment>_<method>_seed<seed>``, the method by
its paper name: ``..._ours_seed1``), ``resume`` (continue the run in ``out_dir`` if there is one, else
start it), ``stop_timeout`` (seconds ``close`` waits for the trainer's final checkpoint), ``autostart``
(read-only).

The training parameters are read when training starts; ``out_dir`` is resolved against the node's
working directory and logged as an absolute path. A set of training parameters is refused while
training runs (they would change nothing), and also when it brings a new error into the settings
(the reason is the error: "unknown method 'x'", a bad sample count, ...). A set that leaves an
earlier error in place (of another parameter) is accepted: training starts once none is left.

On SIGINT / SIGTERM (``common.run_node``) the trainer finishes its current iteration, writes a
checkpoint and the node exits 0; with ``resume: true`` the next start continues from that checkpoint.

Publishes:
  ``~/progress``   diagnostic_msgs/DiagnosticArray after every iteration: phase, iteration, samples,
                   per-task mean return (and the pooled one), samples/s; level ERROR with the reason
                   if a parameter is bad or training fails (the node stays up; fix the parameter with
                   ``ros2 param set`` and training starts).
  ``checkpoint``   std_msgs/String, transient local: the path of each new checkpoint file.
"""
from __future__ import annotations

if __name__ == "__main__":  # python -m: take over SIGINT/SIGTERM before the heavy imports (signals.py)
    from mt_specialize.ros.signals import STOP

    STOP.install()

import math
import threading
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node

from mt_specialize.config import SETTINGS, TrainConfig, canonical_settings
from mt_specialize.ros import topics
from mt_specialize.ros.common import ParameterRules, number_at_least, run_node, steady_timer
from mt_specialize.run_dir import latest_checkpoint

OK, ERROR = DiagnosticStatus.OK, DiagnosticStatus.ERROR
#: the training settings the node takes as parameters: every one but the mappings (YAML only)
TRAINING_SETTINGS = {name: declared for name, declared in SETTINGS.items() if declared.scalar}
#: the parameters read when training starts: the settings, the paper's names of some, out_dir, resume
PARAMS = (*TRAINING_SETTINGS, *(d.paper_name for d in TRAINING_SETTINGS.values() if d.paper_name),
          "out_dir", "resume")
#: the parameter value of a null setting; -1 too (parameter files that gave a negative number for it)
UNSET = ""


def is_unset(value) -> bool:
    """Whether a parameter value leaves its setting null: ``''`` or -1."""
    if isinstance(value, str):
        return value.strip() in (UNSET, "-1")
    return value is None or (not isinstance(value, bool) and value == -1)


# ---------------------------------------------------------------------------------------------
# Adapter to the core trainer: the only place that knows its API.
# ---------------------------------------------------------------------------------------------
def make_config(params: dict):
    """Node parameters -> a ``TrainConfig`` checked against its experiment, and the experiment
    (ValueError with the reason if bad). A setting whose parameter is missing from ``params``, or unset
    (``is_unset``) where the setting may be null, takes the setting's default."""
    from mt_specialize.experiments import get_experiment

    given = {}
    for name, declared in TRAINING_SETTINGS.items():
        for key in (name, declared.paper_name):
            if key and key in params and not (declared.nullable and is_unset(params[key])):
                given[key] = params[key]
    config = TrainConfig(**canonical_settings(given, source="parameters"))
    try:
        experiment = get_experiment(config.experiment)
    except Exception as exc:
        raise ValueError(f"experiment {config.experiment!r}: {exc}") from None
    config.resolved(experiment.budget, experiment.batch_size)  # raises ValueError on a bad value
    return config, experiment


def default_out_dir(config, experiment) -> Path:
    """``runs/<experiment>_<method>_seed<seed>``, the method by the name run files record (``ours``)."""
    from mt_specialize.methods import get_method

    return Path("runs") / f"{experiment.name}_{get_method(config.method).file_name}_seed{config.seed}"


def settings_errors(params: dict) -> list[str]:
    """Every reason ``make_config`` would refuse these parameters, each problem found on its own: the
    experiment, the method, and the other settings (checked with a known experiment and method in
    place of bad ones)."""
    from mt_specialize.experiments import get_experiment
    from mt_specialize.methods import get_method

    errors, stand_ins = [], {}
    try:
        get_experiment(str(params["experiment"]))
    except Exception as exc:  # ValueError / OSError: an unknown name or an unreadable file
        errors.append(f"experiment {params['experiment']!r}: {exc}")
        stand_ins["experiment"] = "three_hoppers"
    try:
        get_method(str(params["method"]))
    except ValueError as exc:
        errors.append(str(exc))
        # a method that accepts the split settings given (joint refuses any, gradient_guided needs them in budget)
        split = any(not is_unset(params.get(k)) for k in ("joint_samples", "jt", "split_fraction", "sp"))
        stand_ins["method"] = "gradient_guided" if split else "joint"
    try:
        make_config({**params, **stand_ins})
    except Exception as exc:
        errors.append(str(exc))
    return errors


def run_training(config, out_dir: Path, resume: bool, progress, stop: threading.Event) -> dict:
    """Train to the budget; ``progress(row: dict)`` after each iteration; a set ``stop`` makes the
    trainer write a checkpoint and return early (``train.Interrupted``)."""
    from mt_specialize import train

    trainer = train.Trainer(config, out_dir, resume=resume)

    def on_progress(row: dict) -> None:
        try:
            progress(row)
        except Exception:  # publishing must never break training (e.g. during shutdown)
            pass

    trainer.progress = on_progress
    if stop.is_set():  # stopped while the trainer was being built: no iteration to save
        trainer.close()
        raise train.Interrupted("stopped before the first iteration")
    return trainer.run(should_stop=stop.is_set)


# ---------------------------------------------------------------------------------------------
# The node
# ---------------------------------------------------------------------------------------------
class LearnerNode(Node):
    """See the module docstring."""

    def __init__(self, **kwargs):
        super().__init__("learner", allow_undeclared_parameters=True, **kwargs)  # undeclared: ParameterRules refuses
        from diagnostic_msgs.msg import DiagnosticArray
        from std_msgs.msg import String

        rules = ParameterRules(self)
        for name, declared in TRAINING_SETTINGS.items():  # read when training starts; checked when set
            default = UNSET if declared.default is None else declared.default
            description = declared.describe() + (f"; {UNSET!r} = the default" if declared.nullable else "")
            rules.declare(name, default, description, dynamic=True, constraints=declared.allowed())
            if declared.paper_name:
                rules.declare(declared.paper_name, default, f"the paper's name of {name}", dynamic=True,
                              constraints=declared.allowed())
        rules.declare("out_dir", "", "run directory ('' = runs/<experiment>_<method>_seed<seed>), relative to the "
                      "node's working directory")
        rules.declare("resume", False, "continue the run in out_dir if there is one")
        rules.declare("autostart", True, "start training at once", read_only=True)
        rules.declare("stop_timeout", 120.0, "s the trainer gets on a stop request to finish its iteration and "
                      "checkpoint", check=number_at_least(0.0, strict=True, unit=" s"))
        self.add_on_set_parameters_callback(self._check_training_parameters)

        self._String = String
        self._progress_pub = self.create_publisher(DiagnosticArray, topics.PROGRESS.name, topics.PROGRESS.qos)
        self._ckpt_pub = self.create_publisher(String, topics.CHECKPOINT.name, topics.CHECKPOINT.qos)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = ("starting", OK, {})          # (message, level, values)
        self._last_row: dict = {}
        self._last_ckpt: Path | None = None
        self.out_dir: Path | None = None
        self.add_post_set_parameters_callback(self._on_params_set)
        self._timer = steady_timer(self, 1.0, self._on_timer)
        if self.get_parameter("autostart").value:
            self._start()

    # -- status -------------------------------------------------------------------------------
    def _params(self) -> dict:
        return {k: self.get_parameter(k).value for k in PARAMS}

    def _set_status(self, message: str, level: bytes, values: dict | None = None) -> None:
        with self._lock:
            self._status = (message, level, dict(values or {}))
        self._publish_status()

    def _publish_status(self) -> None:
        try:
            self._publish_status_unsafe()
        except Exception:  # context already shut down (the worker thread may outlive it briefly)
            pass

    def _publish_status_unsafe(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        with self._lock:
            message, level, values = self._status
        st = DiagnosticStatus(level=level, name=f"{self.get_name()}: training",
                              message=message, hardware_id="mt_specialize")
        st.values = [KeyValue(key=str(k), value=str(v)) for k, v in values.items()]
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self._progress_pub.publish(arr)

    def _error(self, reason: str) -> None:
        self.get_logger().error(reason)
        self._set_status(reason, ERROR, {"phase": "error", "reason": reason})

    # -- training -------------------------------------------------------------------------------
    def _start(self) -> bool:
        if self._thread is not None and self._thread.is_alive():
            return False
        params = self._params()
        try:
            config, experiment = make_config(params)
        except Exception as exc:
            self._error(f"bad parameter: {exc}")
            return False
        out = str(params["out_dir"] or "")
        self.out_dir = (Path(out).expanduser() if out else default_out_dir(config, experiment)).absolute()
        self._stop.clear()
        resume = bool(params["resume"]) and (self.out_dir / "config.yaml").is_file()
        self._last_ckpt = None  # re-publish the newest checkpoint of a resumed run at once
        previous = latest_checkpoint(self.out_dir) if resume else None
        self._set_status("training started", OK, {"phase": "starting", "experiment": experiment.name,
                                                 "method": config.method, "out_dir": str(self.out_dir)})
        self.get_logger().info(f"training {experiment.name} ({config.method}, seed {config.seed}) "
                               f"into {self.out_dir}"
                               + (f", resuming from {previous.name}" if previous is not None else ""))
        self._thread = threading.Thread(target=self._worker, args=(config, self.out_dir, resume),
                                        name="training", daemon=True)
        self._thread.start()
        return True

    def _worker(self, config, out_dir: Path, resume: bool) -> None:
        ok = OK
        try:
            summary = run_training(config, out_dir, resume, self._on_progress, self._stop)
        except Exception as exc:
            name = type(exc).__name__
            if name == "Interrupted":
                self._check_checkpoint()
                self._set_status(f"stopped: {exc}", ok, {**self._values(self._last_row), "phase": "stopped"})
                done = (f"after iteration {self._last_row['iteration']}" if "iteration" in self._last_row
                        else "before its first iteration")
                self._last_ckpt = self._last_ckpt or latest_checkpoint(out_dir)
                self.get_logger().info(f"training stopped {done}; last checkpoint {self._last_ckpt or 'none'}"
                                       + (" (resume: true continues from it)" if self._last_ckpt else ""))
            else:
                self._error(f"training failed: {name}: {exc}")
            return
        self._check_checkpoint()
        values = {**self._values(self._last_row), "phase": "done"}
        for k, v in (summary or {}).get("returns", {}).items():
            values[f"return/{k}"] = _fmt(v)
        self._set_status("training finished", ok, values)
        self.get_logger().info(f"training finished: {summary}")

    @staticmethod
    def _values(row: dict) -> dict:
        keep = {}
        for k, v in row.items():
            if k in ("phase", "iteration", "samples", "return_pooled", "samples_per_s") \
                    or k.startswith(("return/", "ended/")):  # ended/<task>/<cause>: this iteration's episode ends
                keep[k] = _fmt(v)
        return keep

    def _on_progress(self, row: dict) -> None:
        """Called by the trainer (worker thread) after every iteration."""
        self._last_row = dict(row)
        self._set_status(f"{row.get('phase', '?')}: iteration {row.get('iteration')}, "
                         f"{row.get('samples')} samples", OK, self._values(row))
        self._check_checkpoint()

    def _check_checkpoint(self) -> None:
        if self.out_dir is None:
            return
        path = latest_checkpoint(self.out_dir)
        if path is not None and path != self._last_ckpt:
            self._last_ckpt = path
            try:
                self._ckpt_pub.publish(self._String(data=str(path.resolve())))
                self.get_logger().info(f"new checkpoint {path}")
            except Exception:  # context already shut down
                pass

    # -- callbacks ------------------------------------------------------------------------------
    def _check_training_parameters(self, params) -> SetParametersResult:
        """Refuse a set of training parameters that would be ignored (training runs) or that brings
        a new error into the settings (see the module docstring)."""
        changed = {p.name: p.value for p in params if p.name in PARAMS}
        if not changed:
            return SetParametersResult(successful=True)
        if self._thread is not None and self._thread.is_alive():
            return SetParametersResult(successful=False, reason=(
                f"{', '.join(changed)}: read when training starts, and training into {self.out_dir} is running "
                f"(stop the learner and start it with the new value)"))
        current = self._params()
        known = settings_errors(current)
        new = [e for e in settings_errors({**current, **changed}) if e not in known]
        if new:
            return SetParametersResult(successful=False, reason="; ".join(new))
        return SetParametersResult(successful=True)

    def _on_timer(self) -> None:
        self._publish_status()  # late subscribers see the state, errors included

    def _on_params_set(self, params) -> None:
        if any(p.name in PARAMS for p in params) and (self._thread is None or not self._thread.is_alive()):
            self._start()

    def close(self) -> None:
        """Ask the trainer to stop after its current iteration and write a checkpoint; wait for it
        (at most ``stop_timeout`` s, then RuntimeError: the node exits 1)."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            timeout = float(self.get_parameter("stop_timeout").value)
            done = self._last_row.get("samples", 0)  # as reported to this node by the last progress call
            self.get_logger().info(f"stopping training: finishing the current iteration, then a checkpoint "
                                   f"(done: {done} samples)")
            self._thread.join(timeout=timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"training did not stop within stop_timeout={timeout:g} s; "
                                   f"the last checkpoint is {self._last_ckpt or 'none'}")


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def main(args=None) -> int:
    return run_node(LearnerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
