"""Policy-server node: every task of a checkpoint at once, one batched forward per control tick.

Parameters:
  ``checkpoint``        path of a checkpoint, or of an ONNX export (``*.onnx``, ``mt-specialize export
                        --format onnx``; served by onnxruntime); may be empty until the ``checkpoint``
                        topic gives one.
                        A checkpoint given at start that cannot be served (bad file, or its tasks do
                        not fit the robots) stops the node with the reason (exit code 1); setting it
                        at run time loads it, a bad file is refused with the reason.
  ``checkpoint_topic``  std_msgs/String, transient local (default ``checkpoint``): each new path
                        published there (by the learner) is hot-loaded; a bad file is refused with an
                        error log and the old weights keep serving.
  ``robots``            robot namespaces served (each has ``observation`` in, ``commands`` out).
  ``tasks``             initial task per robot (default: the robot's name if the checkpoint has such
                        a task, else the checkpoint's tasks in order).
  ``rate_mode``         ``batched`` (default): the observations of one control tick are gathered
                        until every active robot has sent one, then ONE ``act`` call answers them all;
                        a batch waits at most ``batch_timeout_ms`` and at most half the robots' control
                        period (see :class:`TickBatcher`). ``immediate``: every observation is answered
                        at once by its own ``act`` call. See docs/ros.md for the measured latencies.
  ``batch_timeout_ms``  longest wait of a batch for its missing robots (default 3 ms; > 0).
  ``command_units``     ``normalized`` (default): the policy's mean action per actuator, as trained
                        (the simulator clips it to [-1, 1]); ``effort``: N*m, the actuator's gear times
                        the action clipped to [-1, 1] (the simulator's ``command_units`` must match). The
                        command's ``layout.dim[0].label`` says which.
  ``task.<robot>``      the task driving each robot; the set-parameters callback refuses a task that
                        is not one of the robot's with the list of allowed ones, and ``task.X`` of a
                        robot X it does not serve with "no robot 'X'; robots: [...]".
The parameters other than ``checkpoint`` and ``task.<robot>`` are read at start-up (read-only).

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
import time

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from mt_specialize.ros import topics
from mt_specialize.ros.common import (
    WARN_THROTTLE_S,
    ParameterRules,
    array_from_msg,
    check_vector,
    clean_ns,
    freeze_heap,
    number_at_least,
    one_of,
    run_node,
    set_array_data,
    steady_timer,
)
from mt_specialize.ros.preflight import COMMAND_UNITS

RATE_MODES = ("batched", "immediate")
#: A robot counts as active (the batch waits for it) if it sent an observation this recently.
ACTIVE_WINDOW_S = 0.5
#: Weight of the newest interval in a robot's control-period estimate (exponential moving average).
PERIOD_EMA = 0.2


def trained_profile(policy) -> str:
    """The profile (robot physics) the policy's run trained on: its record's, ``none`` for a run older
    than profiles, ``?`` for a policy without a run record."""
    run_config = getattr(policy, "run_config", None)  # a policy object given to the node may have none
    return str(run_config.get("profile", "none")) if run_config else "?"


class TickBatcher:
    """Which robots' observations the batched mode answers together; times in s (``time.monotonic``).

    A batch holds the observations of one control tick. It is complete once every robot active in
    the last ``ACTIVE_WINDOW_S`` has sent one, and waits at most :meth:`max_wait`: ``timeout``, and
    never more than half the control period measured from the robots' observation intervals. An
    observation that comes later than that after the batch began, or a second one from a robot
    already in it, belongs to a later tick, so the pending batch is answered first.

    Without the period bound a batch could span two ticks whenever the period is shorter than
    ``timeout`` (500 Hz against 3 ms): once one robot was answered alone (the first one after a
    pause, or a late robot's partners after a timeout), the others' observations each waited a whole
    period for that robot's next one, every tick from then on.
    """

    def __init__(self, n_robots: int, timeout: float):
        if not timeout > 0 or timeout == float("inf"):
            raise ValueError(f"batch timeout must be a positive finite number of seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self.fresh = [False] * n_robots               # observation in the pending batch
        self.last_seen = [-float("inf")] * n_robots   # arrival time of each robot's last observation
        self.period: list[float | None] = [None] * n_robots  # moving average of its observation interval
        self.started: float | None = None             # arrival of the pending batch's first observation

    def max_wait(self, now: float) -> float:
        """The longest a batch waits: ``timeout``, or half the shortest period of an active robot."""
        periods = [p for p, seen in zip(self.period, self.last_seen)
                   if p is not None and now - seen < ACTIVE_WINDOW_S]
        return min(self.timeout, 0.5 * min(periods)) if periods else self.timeout

    def arrive(self, i: int, now: float) -> list[int]:
        """Robot ``i``'s observation arrived: updates its period; returns the robots of the pending
        batch to answer before this observation joins one (an earlier tick's), else []."""
        since = now - self.last_seen[i]
        self.last_seen[i] = now
        if since < ACTIVE_WINDOW_S:  # a pause is not a control period
            p = self.period[i]
            self.period[i] = since if p is None else p + PERIOD_EMA * (since - p)
        if self.started is not None and (self.fresh[i] or now - self.started >= self.max_wait(now)):
            return self.take()
        return []

    def add(self, i: int, now: float) -> bool:
        """Robot ``i``'s observation (after :meth:`arrive`) joins the pending batch; True when no
        active robot still owes its observation."""
        self.fresh[i] = True
        if self.started is None:
            self.started = now
        return all(fresh or now - seen >= ACTIVE_WINDOW_S for fresh, seen in zip(self.fresh, self.last_seen))

    def take(self) -> list[int]:
        """The robots of the pending batch, which is then empty."""
        idx = [k for k, fresh in enumerate(self.fresh) if fresh]
        self.fresh = [False] * len(self.fresh)
        self.started = None
        return idx


def robot_model(task: str) -> str | None:
    """The robot model (``TaskSpec.robot``) of a built-in task, None for any other name."""
    from mt_specialize.envs.tasks import TASKS

    spec = TASKS.get(task)
    return spec.robot if spec is not None else None


def load_policy(path: str):
    """An ONNX export (``*.onnx``: ``onnx_export.OnnxPolicy``) or a checkpoint
    (``InferencePolicy.from_checkpoint``): the only place that loads weights."""
    if not path:
        raise ValueError("empty checkpoint path")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    if path.endswith(".onnx"):
        from mt_specialize.learning.onnx_export import OnnxPolicy

        return OnnxPolicy(path)
    from mt_specialize.learning.inference import InferencePolicy

    return InferencePolicy.from_checkpoint(path)


def task_gears(policy) -> np.ndarray:
    """(T, act_dim) N*m of a unit action per task of ``policy`` and actuator: from an ONNX export's
    manifest, else the task's robot as its run trained it (``experiments.task_io``); ValueError if a
    task's robot is unknown."""
    layout = getattr(policy, "manifest", {}).get("layout", {})
    rows = []
    for name in policy.task_names:
        actuators = (layout.get(name) or {}).get("actuators")
        if actuators is None:
            from mt_specialize.experiments import task_io

            actuators = task_io(name, policy.run_config)["actuators"]
        rows.append([float(a["gear"]) for a in actuators])
    gears = np.array(rows, dtype=np.float64)
    if gears.shape != (len(policy.task_names), policy.act_dim):
        raise ValueError(f"the tasks' robots have {gears.shape[1:]} actuators, the policy {policy.act_dim} actions")
    return gears


class PolicyServerNode(Node):
    """See the module docstring."""

    def __init__(self, policy=None, **kwargs):
        # undeclared names are refused by ParameterRules (task.X: "no robot 'X'; robots: [...]")
        super().__init__("policy_server", allow_undeclared_parameters=True, **kwargs)
        from std_msgs.msg import Float64MultiArray, MultiArrayDimension, String

        self._Float64MultiArray = Float64MultiArray
        self._MultiArrayDimension = MultiArrayDimension
        self._rules = rules = ParameterRules(self, unknown=self._unknown_parameter)
        ckpt = str(rules.declare("checkpoint", "", "checkpoint or ONNX export to serve (loaded when set)"))
        topic = rules.declare("checkpoint_topic", topics.CHECKPOINT.name,
                              "std_msgs/String topic of new checkpoint paths (transient local)", read_only=True)
        self.robots = [clean_ns(r) for r in rules.declare_strings(
            "robots", [], "robot namespaces served: <robot>/observation -> <robot>/commands")]
        init_tasks = rules.declare_strings("tasks", [], "initial task per robot")
        self.rate_mode = rules.declare("rate_mode", RATE_MODES[0], " | ".join(RATE_MODES), read_only=True,
                                       check=one_of(RATE_MODES))
        self.batch_timeout = rules.declare("batch_timeout_ms", 3.0, "batched: longest wait for the missing robots",
                                           read_only=True, check=number_at_least(0.0, strict=True, unit=" ms")) * 1e-3
        self.units = rules.declare("command_units", COMMAND_UNITS[0],
                                   "normalized: the mean action; effort: N*m = gear x clip(action, -1, 1)",
                                   read_only=True, check=one_of(COMMAND_UNITS))

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
        self._gears: np.ndarray | None = None  # (T, act_dim) in effort units
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
            rules.declare(f"task.{r}", self._task[r], f"task driving robot {r}")
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # Serving state.
        n = len(self.robots)
        self._obs = [None] * n            # latest observation not answered yet (np.ndarray)
        self._bad = [None] * n            # reason it is malformed, or None
        self._cmd_msgs = [Float64MultiArray() for _ in range(n)]  # reused for every command
        self.served = np.zeros(n, dtype=np.int64)
        self.rejected = np.zeros(n, dtype=np.int64)
        self.act_calls = 0
        self._cmd_pubs = [self.create_publisher(Float64MultiArray, topics.COMMANDS.of(r), topics.COMMANDS.qos)
                          for r in self.robots]
        self._obs_subs = [self.create_subscription(Float64MultiArray, topics.OBSERVATION.of(r),
                                                   lambda msg, i=i: self._on_observation(i, msg),
                                                   topics.OBSERVATION.qos)
                          for i, r in enumerate(self.robots)]
        self._ckpt_sub = self.create_subscription(String, topic, self._on_checkpoint_topic, topics.CHECKPOINT.qos)
        self._batch_timer = None
        self._batcher = None
        if self.rate_mode == "batched" and n > 1:
            self._batcher = TickBatcher(n, self.batch_timeout)
            self._batch_wait_ns = int(self.batch_timeout * 1e9)  # the timer's period
            # steady clock: under use_sim_time the simulation clock only advances once commands are sent
            self._batch_timer = steady_timer(self, self.batch_timeout, self._on_batch_timeout)
            self._batch_timer.cancel()
        self._sync_timer = steady_timer(self, 0.2, self._sync_task_params)
        self.get_logger().info(
            f"serving robots {self.robots} ({self.rate_mode}, commands in {self.units} units); "
            + (f"checkpoint {self.checkpoint_path}, tasks {self.policy.task_names}, trained on profile "
               f"{trained_profile(self.policy)!r}"
               if self.policy is not None
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
        gears = task_gears(policy) if self.units == "effort" else None
        self.policy = policy
        self._gears = gears
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
                    Trigger, topics.switch_service(r, t), lambda req, resp, r=r, t=t: self._on_switch(r, t, resp)))

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
                               f"tasks {list(self.policy.task_names)}, robots -> {self._task}, trained on profile "
                               f"{trained_profile(self.policy)!r} "
                               f"(the simulator's profile parameter must match)")
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
    def _unknown_parameter(self, name: str) -> str | None:
        """The refusal of a set of an undeclared parameter ``task.X``: X is not a served robot."""
        if name.startswith("task."):
            return f"no robot {name[len('task.'):]!r}; robots: {self.robots}"
        return None

    def _on_set_parameters(self, params) -> SetParametersResult:
        changes: dict[str, str] = {}
        ckpt = None
        for p in params:
            if p.name.startswith("task."):
                robot = p.name[len("task."):]
                if robot not in self._task:
                    return SetParametersResult(successful=False, reason=self._unknown_parameter(p.name))
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
        batcher = self._batcher
        now = time.monotonic()
        if batcher is not None:
            earlier = batcher.arrive(i, now)
            if earlier:  # the pending batch is an earlier tick's: answer it before this one joins
                self._batch_timer.cancel()
                self._flush(earlier)
        if self.policy is None:
            self.get_logger().warning("observation received but no checkpoint is loaded: no command sent",
                                      throttle_duration_sec=5.0)
            return
        obs = array_from_msg(msg)
        self._obs[i] = obs
        self._bad[i] = check_vector(obs, self._obs_dim)
        if batcher is None:  # immediate mode, or a single robot
            self._flush([i])
            return
        if batcher.add(i, now):
            self._batch_timer.cancel()
            self._flush(batcher.take())
        elif self._batch_timer.is_canceled():  # the first observation of a batch: bound its wait
            wait_ns = max(int(batcher.max_wait(now) * 1e9), 1)
            if abs(wait_ns - self._batch_wait_ns) > self._batch_wait_ns // 10:
                self._batch_timer.timer_period_ns = self._batch_wait_ns = wait_ns
            self._batch_timer.reset()

    def _on_batch_timeout(self) -> None:
        self._batch_timer.cancel()
        pending = self._batcher.take()
        if pending:
            self._flush(pending)

    def _flush(self, idx: list[int]) -> None:
        """Answer the observations of robots ``idx`` with ONE batched act call."""
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
                if self._gears is not None:  # effort units: N*m of the clipped action
                    a = self._gears[self._task_index[i]] * np.clip(a, -1.0, 1.0)
            cmd = self._cmd_msgs[i]
            if len(cmd.layout.dim) != 1 or cmd.layout.dim[0].size != a.size:
                cmd.layout.dim = [self._MultiArrayDimension(label=self.units, size=a.size, stride=a.size)]
            set_array_data(cmd, a)
            self._cmd_pubs[i].publish(cmd)


def main(args=None) -> int:
    return run_node(PolicyServerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
