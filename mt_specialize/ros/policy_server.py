"""Policy-server node: every task of a checkpoint at once, one batched forward per control tick.

Parameters:
  ``checkpoint``        path of a checkpoint (may be empty until the ``checkpoint`` topic gives one).
                        A checkpoint given at start that cannot be served (bad file, or its tasks do
                        not fit the robots) stops the node with the reason (exit code 1); setting it
                        at run time loads it, a bad file is refused with the reason.
  ``checkpoint_topic``  std_msgs/String, transient local (default ``checkpoint``): each new path
                        published there (by the learner) is hot-loaded; a bad file is refused with an
                        error log and the old weights keep serving.
  ``robots``            robot namespaces served (each has ``observation`` in, ``commands`` out).
  ``tasks``             initial task per robot (default: the robot's name if the checkpoint has such
                        a task, else the checkpoint's tasks in order).
  ``rate_mode``         ``batched`` (default): observations are gathered until every active robot has
                        sent one (or ``batch_timeout_ms`` passed since the first), then ONE ``act``
                        call answers them all; ``immediate``: every observation is answered at once
                        by its own ``act`` call. See docs/ros.md for the measured latencies.
  ``task.<robot>``      the task driving each robot; the set-parameters callback refuses a task that
                        is not one of the robot's with the list of allowed ones.

The tasks of a robot: those of the loaded checkpoint (before one arrives: the built-in tasks) whose
robot model (``TaskSpec.robot``) is the one of the robot's initial task (``tasks``); so
``task.biped`` accepts ``biped_backward`` but refuses ``hopper_box``, also before a checkpoint
arrives (the task then drives the robot from the first checkpoint on, which must contain it).

Services: ``/<robot>/switch_to_<task>`` (std_srvs/Trigger) for every robot and each of its tasks in
the loaded checkpoint. A malformed observation (wrong length, NaN/inf) gets a throttled warning and a
zero (safe) command; the node keeps serving. Without a checkpoint no command is sent.
"""
from __future__ import annotations

if __name__ == "__main__":  # python -m: take over SIGINT/SIGTERM before the heavy imports (signals.py)
    from mt_specialize.ros.signals import STOP

    STOP.install()

import os
import re
import time

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from mt_specialize.ros.common import (
    CONTROL_QOS,
    LATCHED_QOS,
    WARN_THROTTLE_S,
    array_from_msg,
    check_vector,
    clean_ns,
    freeze_heap,
    run_node,
    set_array_data,
    string_list_param,
)

RATE_MODES = ("batched", "immediate")
#: A robot counts as active (the batch waits for it) if it sent an observation this recently.
ACTIVE_WINDOW_S = 0.5


def service_name_part(task: str) -> str:
    """A task name made safe for a ROS name token."""
    return re.sub(r"[^A-Za-z0-9_]", "_", task)


def robot_model(task: str) -> str | None:
    """The robot model (``TaskSpec.robot``) of a built-in task, None for any other name."""
    from mt_specialize.envs.tasks import TASKS

    spec = TASKS.get(task)
    return spec.robot if spec is not None else None


def load_policy(path: str):
    """``InferencePolicy.from_checkpoint`` (adapter point: the only place that loads weights)."""
    from mt_specialize.learning.inference import InferencePolicy

    if not path:
        raise ValueError("empty checkpoint path")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    return InferencePolicy.from_checkpoint(path)


class PolicyServerNode(Node):
    """See the module docstring."""

    def __init__(self, policy=None, **kwargs):
        super().__init__("policy_server", **kwargs)
        from std_msgs.msg import Float64MultiArray, MultiArrayDimension, String

        self._Float64MultiArray = Float64MultiArray
        self._MultiArrayDimension = MultiArrayDimension
        ckpt = str(self.declare_parameter(
            "checkpoint", "", ParameterDescriptor(description="checkpoint path (hot-loaded when set)")).value)
        topic = str(self.declare_parameter("checkpoint_topic", "checkpoint").value)
        self.robots = [clean_ns(r) for r in string_list_param(self, "robots", [])]
        init_tasks = string_list_param(self, "tasks", [])
        self.rate_mode = str(self.declare_parameter(
            "rate_mode", "batched", ParameterDescriptor(description="batched | immediate")).value)
        self.batch_timeout = float(self.declare_parameter("batch_timeout_ms", 3.0).value) * 1e-3

        if self.rate_mode not in RATE_MODES:
            raise ValueError(f"parameter rate_mode={self.rate_mode!r}: must be one of {list(RATE_MODES)}")
        if not self.robots:
            raise ValueError("parameter robots is empty: give the robot namespaces to serve")
        if len(set(self.robots)) != len(self.robots):
            raise ValueError(f"parameter robots has duplicates: {self.robots}")
        if init_tasks and len(init_tasks) != len(self.robots):
            raise ValueError(f"parameter tasks has {len(init_tasks)} entries for {len(self.robots)} robots")

        self.policy = None
        self.checkpoint_path = ""
        self._task: dict[str, str] = {r: (init_tasks[i] if init_tasks else "") for i, r in enumerate(self.robots)}
        self._task_index = np.zeros(len(self.robots), dtype=np.int64)
        self._switch_services = []
        #: robot -> robot model of its initial task (None: not known until a checkpoint names one)
        self._model: dict[str, str | None] = {r: robot_model(t) if t else None for r, t in self._task.items()}

        # The loader (torch) is imported now, not in the first checkpoint callback: that import takes
        # seconds on a busy machine, and a callback that long delays serving and a stop signal.
        import mt_specialize.learning.inference  # noqa: F401

        # Weights: an injected policy (tests), else the checkpoint parameter.
        if policy is not None:
            self._install(policy, "<in-process>")
        elif ckpt:
            try:
                self._install(load_policy(ckpt), ckpt)
            except Exception as exc:  # an explicit checkpoint that cannot be served: do not start
                raise ValueError(f"checkpoint {ckpt!r} cannot be served: {exc}") from None

        for r in self.robots:
            self.declare_parameter(f"task.{r}", self._task[r],
                                   ParameterDescriptor(description=f"task driving robot {r}"))
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # Serving state.
        n = len(self.robots)
        self._obs = [None] * n            # latest observation not answered yet (np.ndarray)
        self._bad = [None] * n            # reason it is malformed, or None
        self._fresh = [False] * n         # observation received, not answered yet
        self._last_seen = [-1e9] * n      # time.monotonic() of the last observation
        self._cmd_msgs = [Float64MultiArray() for _ in range(n)]  # reused for every command
        self.served = np.zeros(n, dtype=np.int64)
        self.rejected = np.zeros(n, dtype=np.int64)
        self.act_calls = 0
        self._cmd_pubs = [self.create_publisher(Float64MultiArray, f"{r}/commands", CONTROL_QOS)
                          for r in self.robots]
        self._obs_subs = [self.create_subscription(Float64MultiArray, f"{r}/observation",
                                                   lambda msg, i=i: self._on_observation(i, msg), CONTROL_QOS)
                          for i, r in enumerate(self.robots)]
        self._ckpt_sub = self.create_subscription(String, topic, self._on_checkpoint_topic, LATCHED_QOS)
        self._batch_timer = None
        if self.rate_mode == "batched" and n > 1:
            self._batch_timer = self.create_timer(max(self.batch_timeout, 1e-4), self._on_batch_timeout)
            self._batch_timer.cancel()
        self._sync_timer = self.create_timer(0.2, self._sync_task_params)
        self.get_logger().info(
            f"serving robots {self.robots} ({self.rate_mode}); "
            + (f"checkpoint {self.checkpoint_path}, tasks {self.policy.task_names}" if self.policy is not None
               else f"no checkpoint yet (waiting on topic {self._ckpt_sub.topic_name})"))

    # -- weights --------------------------------------------------------------------------------
    @staticmethod
    def _builtin_tasks() -> list[str]:
        from mt_specialize.envs.tasks import TASKS

        return sorted(TASKS)

    def _tasks_of(self, robot: str, names: list[str]) -> list[str]:
        """The names that can drive ``robot``: same robot model as its initial task (a name whose
        model is not known, e.g. a task from an experiment YAML, passes)."""
        model = self._model.get(robot)
        return [t for t in names if model is None or robot_model(t) in (model, None)]

    def _allowed_tasks(self, robot: str) -> list[str]:
        """The tasks ``robot`` can be switched to now (see the module docstring)."""
        if self.policy is not None:
            return self._tasks_of(robot, list(self.policy.task_names))
        if self._model.get(robot) is None:
            return []
        return self._tasks_of(robot, self._builtin_tasks())

    def _install(self, policy, path: str) -> None:
        """Make ``policy`` the serving one, or raise ValueError (the old one stays)."""
        names = list(policy.task_names)
        new_task = dict(self._task)
        for i, r in enumerate(self.robots):
            t = new_task[r]
            fitting = self._tasks_of(r, names)
            if not fitting:
                raise ValueError(f"none of its tasks {names} is for the robot model {self._model[r]!r} of "
                                 f"robot {r!r} (task {t!r})")
            if not t:
                new_task[r] = r if r in fitting else fitting[i % len(fitting)]
            elif t not in names:
                raise ValueError(f"its tasks {names} do not include {t!r}, the task of robot {r!r}")
        self.policy = policy
        self._obs_dim = int(policy.obs_dim)
        self.checkpoint_path = path
        self._task = new_task
        for r, t in new_task.items():
            if self._model[r] is None:
                self._model[r] = robot_model(t)
        self._task_index = np.array([names.index(new_task[r]) for r in self.robots], dtype=np.int64)
        self._make_services()

    def _make_services(self) -> None:
        from std_srvs.srv import Trigger

        for srv in self._switch_services:
            self.destroy_service(srv)
        self._switch_services = []
        for r in self.robots:
            for t in self._allowed_tasks(r):
                self._switch_services.append(self.create_service(
                    Trigger, f"/{r}/switch_to_{service_name_part(t)}",
                    lambda req, resp, r=r, t=t: self._on_switch(r, t, resp)))

    def _try_load(self, path: str) -> str | None:
        """Load and install; None on success, else the reason (the old weights keep serving)."""
        t0 = time.perf_counter()
        try:
            policy = load_policy(path)
            self._install(policy, path)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        freeze_heap()  # the new weights' objects join the start-up ones (no full-GC pauses)
        self.get_logger().info(f"loaded checkpoint {path} in {(time.perf_counter() - t0) * 1e3:.0f} ms: "
                               f"tasks {list(self.policy.task_names)}, robots -> {self._task}")
        return None

    def _on_checkpoint_topic(self, msg) -> None:
        path = msg.data.strip()
        if not path or path == self.checkpoint_path:
            return
        reason = self._try_load(path)
        if reason is not None:
            self.get_logger().error(f"refused checkpoint {path!r} from topic: {reason}; "
                                    f"still serving {self.checkpoint_path or 'nothing'}")

    def _sync_task_params(self) -> None:
        """Mirror the served tasks into the ``task.<robot>`` parameters (outside any callback)."""
        stale = [Parameter(f"task.{r}", value=t) for r, t in self._task.items()
                 if t and self.get_parameter(f"task.{r}").value != t]
        if self.checkpoint_path and self.checkpoint_path != "<in-process>" \
                and self.get_parameter("checkpoint").value != self.checkpoint_path:
            stale.append(Parameter("checkpoint", value=self.checkpoint_path))
        if stale:
            self.set_parameters(stale)

    # -- task switching -------------------------------------------------------------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        changes: dict[str, str] = {}
        ckpt = None
        for p in params:
            if p.name.startswith("task."):
                robot = p.name[len("task."):]
                if robot not in self._task:
                    return SetParametersResult(successful=False,
                                               reason=f"unknown robot {robot!r}; served robots: {self.robots}")
                value = p.value if isinstance(p.value, str) else None
                allowed = self._allowed_tasks(robot)
                if not allowed:
                    return SetParametersResult(
                        successful=False,
                        reason=f"robot {robot!r} has no initial task (parameter tasks) and no checkpoint is "
                               f"loaded yet, so its tasks are not known")
                if value is None or value not in allowed:
                    return SetParametersResult(
                        successful=False,
                        reason=f"unknown task {p.value!r} for robot {robot!r}; allowed tasks: {allowed}")
                changes[robot] = value
            elif p.name == "checkpoint":
                if not isinstance(p.value, str):
                    return SetParametersResult(successful=False, reason="checkpoint must be a string path")
                ckpt = p.value
            elif p.name in ("robots", "tasks", "rate_mode", "checkpoint_topic", "batch_timeout_ms"):
                return SetParametersResult(successful=False, reason=f"{p.name} is read at start-up only")
        if ckpt and ckpt != self.checkpoint_path:
            reason = self._try_load(ckpt)
            if reason is not None:
                self.get_logger().error(f"refused checkpoint {ckpt!r}: {reason}")
                return SetParametersResult(successful=False, reason=f"checkpoint not loaded: {reason}")
        for robot, task in changes.items():
            if self._task[robot] != task:
                self._task[robot] = task
                if self.policy is not None:
                    idx = self.robots.index(robot)
                    self._task_index[idx] = list(self.policy.task_names).index(task)
                self.get_logger().info(f"robot {robot} now runs task {task}" if self.policy is not None
                                       else f"robot {robot} will run task {task} (no checkpoint loaded yet)")
        return SetParametersResult(successful=True)

    def _on_switch(self, robot: str, task: str, response):
        if self._task.get(robot) == task:
            response.success = True
            response.message = f"robot {robot} already runs task {task}"
            return response
        result = self.set_parameters([Parameter(f"task.{robot}", value=task)])[0]
        response.success = bool(result.successful)
        response.message = (f"robot {robot} now runs task {task}" if result.successful
                            else result.reason)
        return response

    # -- serving --------------------------------------------------------------------------------
    # The hot path: plain Python lists for the per-robot flags (a handful of robots: cheaper than
    # numpy indexing), one reused command message per robot (publish() serialises it at once).
    def _on_observation(self, i: int, msg) -> None:
        now = time.monotonic()
        self._last_seen[i] = now
        if self.policy is None:
            self.get_logger().warning("observation received but no checkpoint is loaded: no command sent",
                                      throttle_duration_sec=5.0)
            return
        obs = array_from_msg(msg)
        self._obs[i] = obs
        self._bad[i] = check_vector(obs, self._obs_dim)
        self._fresh[i] = True
        if self._batch_timer is None:  # immediate mode, or a single robot
            self._flush([i])
            return
        # Answer once no robot active in the last ACTIVE_WINDOW_S still owes its observation.
        if all(fresh or now - seen >= ACTIVE_WINDOW_S for fresh, seen in zip(self._fresh, self._last_seen)):
            self._batch_timer.cancel()
            self._flush([k for k, fresh in enumerate(self._fresh) if fresh])
        elif self._batch_timer.is_canceled():
            self._batch_timer.reset()

    def _on_batch_timeout(self) -> None:
        self._batch_timer.cancel()
        fresh = [k for k, f in enumerate(self._fresh) if f]
        if fresh:
            self._flush(fresh)

    def _flush(self, idx: list[int]) -> None:
        """Answer the observations of robots ``idx`` with ONE batched act call."""
        for i in idx:
            self._fresh[i] = False
        good = [i for i in idx if self._bad[i] is None]
        actions = {}
        if good:
            try:
                obs = self._obs[good[0]][None] if len(good) == 1 else np.stack([self._obs[i] for i in good])
                out = np.asarray(self.policy.act(obs, self._task_index[good]), dtype=np.float64)
                self.act_calls += 1
                finite = np.isfinite(out).all(axis=1)
                actions = {i: out[k] for k, i in enumerate(good) if finite[k]}
            except Exception as exc:  # never stop serving
                self.get_logger().error(f"policy act failed: {type(exc).__name__}: {exc}; sending zeros",
                                        throttle_duration_sec=WARN_THROTTLE_S)
        for i in idx:
            a = actions.get(i)
            if a is None:
                if self._bad[i] is not None:
                    self.get_logger().warning(
                        f"{self.robots[i]}/observation rejected: {self._bad[i]} "
                        f"(policy expects {self.policy.obs_dim}): sending the safe (zero) command",
                        throttle_duration_sec=WARN_THROTTLE_S)
                self.rejected[i] += 1
                a = np.zeros(int(self.policy.act_dim))
            else:
                self.served[i] += 1
            cmd = self._cmd_msgs[i]
            if len(cmd.layout.dim) != 1 or cmd.layout.dim[0].size != a.size:
                cmd.layout.dim = [self._MultiArrayDimension(label="commands", size=a.size, stride=a.size)]
            set_array_data(cmd, a)
            self._cmd_pubs[i].publish(cmd)


def main(args=None) -> int:
    return run_node(PolicyServerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
