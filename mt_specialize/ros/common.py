"""Shared helpers for the ROS 2 nodes: message helpers, parameter rules, timers, the node main loop.

Only this package's ``ros`` modules import ROS; the learning core never does. Topic names, types and
QoS are in ``topics``.
"""
from __future__ import annotations

import array
import gc
import math
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import rclpy
from rclpy.node import Node

#: Minimum interval between two identical warnings (bad command / observation, ...).
WARN_THROTTLE_S = 1.0


# ---------------------------------------------------------------------------------------------
# Environment: keep DDS on this machine
# ---------------------------------------------------------------------------------------------
def local_ros_env(domain_id: int | None = None, base: dict | None = None) -> dict:
    """Environment for child processes that keeps DDS traffic on this machine.

    ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` unless the caller already chose a range
    (``ROS_LOCALHOST_ONLY`` is ignored by the PyPI wheels); ``HOME`` set (rcl needs it).
    """
    env = dict(os.environ if base is None else base)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("HOME", "/tmp")
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(int(domain_id))
    return env


def ensure_local_discovery() -> None:
    """Default this process to localhost-only discovery if the user did not choose."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("HOME", "/tmp")


# ---------------------------------------------------------------------------------------------
# Names and messages
# ---------------------------------------------------------------------------------------------
def clean_ns(ns: str) -> str:
    """'hopper_box', '/hopper_box/' -> 'hopper_box' (namespace without slashes)."""
    return ns.strip().strip("/")


def ns_topic(ns: str, name: str) -> str:
    """Absolute topic name ``/<ns>/<name>``."""
    ns = clean_ns(ns)
    return f"/{ns}/{name}" if ns else f"/{name}"


def array_msg(values: np.ndarray, label: str = "data"):
    """numpy vector -> std_msgs/Float64MultiArray with a one-dimensional layout labelled ``label``."""
    from std_msgs.msg import Float64MultiArray, MultiArrayDimension

    msg = Float64MultiArray()
    v = np.ascontiguousarray(values, dtype=np.float64).ravel()
    msg.layout.dim = [MultiArrayDimension(label=label, size=v.size, stride=v.size)]
    set_array_data(msg, v)
    return msg


def set_array_data(msg, values: np.ndarray) -> None:
    """Fill ``msg.data`` (a float64 sequence) from a float64 vector. An ``array('d')`` is taken
    as is by the generated setter; a list would be checked element by element."""
    msg.data = array.array("d", np.ascontiguousarray(values, dtype=np.float64).tobytes())


def array_from_msg(msg) -> np.ndarray:
    """Float64MultiArray -> float64 vector (honours ``layout.data_offset``); a view of the
    message's ``array('d')`` (no copy) when it has one."""
    data = msg.data
    data = np.frombuffer(data, dtype=np.float64) if isinstance(data, array.array) and data.typecode == "d" \
        else np.asarray(data, dtype=np.float64)
    off = int(msg.layout.data_offset)
    return data[off:] if off else data


def check_vector(v: np.ndarray, n: int) -> str | None:
    """None if ``v`` is a finite vector of length ``n``, else the reason it is not."""
    if v.ndim != 1 or v.size != n:
        return f"expected {n} values, got {v.size}"
    if not np.isfinite(v).all():
        return "non-finite values (NaN/inf)"
    return None


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------
class ParameterRules:
    """A node's parameters as a ROS 2 user expects them: nothing that is set is silently ignored.

    :meth:`declare` declares each with its description. A parameter read only at start-up is
    declared ``read_only`` (``ros2 param describe`` shows it; rclpy refuses a set with "Trying to set
    a read-only parameter"). A settable one may have a ``check`` (value -> None, or the reason it is
    refused, naming what is allowed): it runs on the start-up value (a bad one stops the node with
    the reason) and in the set-parameters callback, which refuses a bad value with
    ``"<name>=<value>: <reason>"`` and keeps the old one. A name that is not declared is refused with
    ``unknown(name)``'s reason, else "no parameter 'X'; parameters: [...]": the node must be created
    with ``allow_undeclared_parameters=True`` so that this callback, not rclpy's "Invalid access to
    undeclared parameter(s)", answers. The node applies accepted values in a post-set callback.
    """

    def __init__(self, node: Node, unknown: Callable[[str], str | None] | None = None):
        self.node = node
        self.unknown = unknown
        self.checks: dict[str, Callable[[Any], str | None]] = {}
        self._declaring: str | None = None  # rclpy runs the set-parameters callbacks on a declare too
        node.add_on_set_parameters_callback(self._on_set)

    def declare(self, name: str, default: Any, description: str, *, read_only: bool = False,
                check: Callable[[Any], str | None] | None = None, dynamic: bool = False,
                constraints: str = "") -> Any:
        """Declare ``name`` (``default``: a value, or a ``Parameter.Type`` for a list that may be
        empty) and return its start-up value; ValueError with the reason if ``check`` refuses it.
        ``dynamic``: any type may be set (the node converts it); ``constraints``: the allowed values in
        words, shown by ``ros2 param describe``."""
        from rcl_interfaces.msg import ParameterDescriptor

        descriptor = ParameterDescriptor(description=description, read_only=read_only, dynamic_typing=dynamic,
                                         additional_constraints=constraints)
        self._declaring = name
        try:
            value = self.node.declare_parameter(name, default, descriptor).value
        finally:
            self._declaring = None
        if check is not None:
            reason = check(value)
            if reason is not None:
                raise ValueError(f"parameter {name}={value!r}: {reason}")
            if not read_only:
                self.checks[name] = check
        return value

    def declare_strings(self, name: str, default: Sequence[str], description: str, *, read_only: bool = True,
                        check: Callable[[list[str]], str | None] | None = None) -> list[str]:
        """A string-array parameter (``default`` when it is not given; an empty list would be typed
        BYTE_ARRAY by rclpy, so it is declared by type)."""
        from rclpy.parameter import Parameter

        value = self.declare(name, list(default) if default else Parameter.Type.STRING_ARRAY, description,
                             read_only=read_only)
        value = [str(x) for x in (value if value is not None else default)]
        reason = check(value) if check is not None else None
        if reason is not None:
            raise ValueError(f"parameter {name}={value!r}: {reason}")
        return value

    def declared(self) -> list[str]:
        return sorted(self.node.list_parameters([], 0).names)

    def _on_set(self, params):
        from rcl_interfaces.msg import SetParametersResult

        for p in params:
            if p.name == self._declaring:
                continue  # checked by declare(), with the node's own message
            if not self.node.has_parameter(p.name):
                reason = self.unknown(p.name) if self.unknown is not None else None
                return SetParametersResult(successful=False, reason=reason or (
                    f"no parameter {p.name!r}; parameters: {self.declared()}"))
            check = self.checks.get(p.name)
            reason = check(p.value) if check is not None else None
            if reason is not None:
                return SetParametersResult(successful=False, reason=f"{p.name}={p.value!r}: {reason}")
        return SetParametersResult(successful=True)


def one_of(allowed: Sequence[str]) -> Callable[[Any], str | None]:
    """A check: the value is one of ``allowed``."""
    return lambda value: None if value in allowed else f"allowed values: {list(allowed)}"


def number_at_least(low: float, strict: bool = False, unit: str = "") -> Callable[[Any], str | None]:
    """A check: a finite number >= ``low`` (> if ``strict``)."""
    def check(value) -> str | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and (value > low if strict else value >= low)
        return None if ok else f"must be a finite number {'>' if strict else '>='} {low:g}{unit}"
    return check


def steady_timer(node: Node, period: float, callback: Callable[[], None]):
    """A timer on the steady (monotonic) clock: it keeps its period also when the node runs on
    simulation time (``use_sim_time``), which advances only as the simulator steps."""
    from rclpy.clock import Clock, ClockType

    return node.create_timer(period, callback, clock=Clock(clock_type=ClockType.STEADY_TIME))


# ---------------------------------------------------------------------------------------------
# Main loop
# ---------------------------------------------------------------------------------------------
def freeze_heap() -> None:
    """Collect once, then move every object alive now out of the cyclic GC's reach (``gc.freeze``).

    Importing torch / numpy / rclpy leaves ~180 000 tracked objects; without this each full
    (generation 2) collection walks all of them: 50-280 ms pauses measured in the policy server
    and the benchmark (docs/ros.md, Latency). Afterwards a collection only walks the objects made
    since, a few microseconds. Objects that die later are still freed by reference counting.
    Called after start-up and after each checkpoint load."""
    gc.collect()
    gc.freeze()


def make_executor():
    """``EventsExecutor`` (about 4x lower pub/sub latency than the default one, measured here),
    falling back to the single-threaded executor on rclpy versions without it."""
    try:
        from rclpy.experimental import EventsExecutor

        return EventsExecutor()
    except Exception:  # pragma: no cover - older rclpy
        from rclpy.executors import SingleThreadedExecutor

        return SingleThreadedExecutor()


def run_node(factory: Callable[[], Node], args: Iterable[str] | None = None) -> int:
    """Init rclpy, build the node, spin until SIGINT / SIGTERM, shut down cleanly; the exit code.

    rclpy's own signal handlers are not installed (they chain to Python's KeyboardInterrupt, which
    can land anywhere, clean-up included); ``signals.STOP`` records the signals instead, as often and
    as closely spaced as they come. After a stop signal the node's ``close()`` runs (the learner
    writes its checkpoint there), then the node, the executor and rclpy are shut down, and the exit
    code is 0. 1 if building the node, a callback or ``close()`` raised (logged with the reason).
    """
    from rclpy.signals import SignalHandlerOptions

    from mt_specialize.ros.signals import STOP

    STOP.install()
    ensure_local_discovery()
    name = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] not in ("", "-c", "-m") else "node"
    if STOP.requested:  # stopped while importing: nothing to clean up
        STOP.ignore_from_now()
        return 0
    rclpy.init(args=list(sys.argv if args is None else args), signal_handler_options=SignalHandlerOptions.NO)
    node = None
    executor = None
    code = 0
    try:
        node = factory()
        name = node.get_name()
        executor = make_executor()
        executor.add_node(node)
        freeze_heap()
        # Not executor.spin(): a stop signal only sets a flag, checked between short waits.
        while not STOP.requested and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
        if STOP.requested:
            node.get_logger().info(f"{STOP.name} received: shutting down")
    except Exception as exc:
        code = 1
        _report_failure(name, node, "failed" if node is not None else "cannot start", exc)
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:
                    code = 1
                    _report_failure(name, node, "shut down with an error", exc)
        teardown = _Teardown(name, node, code)
        if executor is not None:
            teardown.step("executor.shutdown", executor.shutdown)
        if node is not None:
            teardown.step("destroy_node", node.destroy_node)
        teardown.step("rclpy.try_shutdown", rclpy.try_shutdown)
        teardown.done()
        if STOP.requested:
            STOP.ignore_from_now()
    return code


#: s the rclpy teardown (executor, node, context) may take once the node's own clean-up is done
TEARDOWN_TIMEOUT = 3.0


class _Teardown:
    """rclpy's teardown steps under a watchdog. The node's own clean-up (``close()``: the learner's
    checkpoint) is complete by then, so nothing is lost if a step blocks: after
    ``TEARDOWN_TIMEOUT`` s the process logs which step blocked and exits with the node's code,
    instead of waiting for ``ros2 launch`` to escalate to SIGTERM and SIGKILL (a stop request only
    sets a flag, so a blocked main thread would never see them)."""

    def __init__(self, name: str, node: Node | None, code: int):
        self.name, self.node, self.code = name, node, code
        self.current = "start"
        self._finished = threading.Event()
        threading.Thread(target=self._watch, name="teardown-watchdog", daemon=True).start()

    def step(self, what: str, call: Callable[[], object]) -> None:
        self.current = what
        try:
            call()
        except Exception:
            pass  # teardown of an already failed node: its reason is logged

    def done(self) -> None:
        self._finished.set()

    def _watch(self) -> None:
        if self._finished.wait(TEARDOWN_TIMEOUT):
            return
        message = (f"[{self.name}] rclpy teardown blocked in {self.current} for {TEARDOWN_TIMEOUT:g} s after "
                   f"the node's clean-up was complete: exiting")
        print(message, file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(self.code)


def _report_failure(name: str, node: Node | None, what: str, exc: BaseException) -> None:
    """A configuration error (ValueError and its kind) is reported by its message alone, anything
    else with the traceback."""
    message = f"{what}: {type(exc).__name__}: {exc}"
    if node is not None:
        node.get_logger().error(message)
    else:
        print(f"[{name}] {message}", file=sys.stderr, flush=True)
    if not isinstance(exc, (ValueError, FileNotFoundError)):
        import traceback

        traceback.print_exception(exc)
