"""Tasks: robot + reward + termination (docs/method.md#robots-and-tasks), vectorised, and one-env Gymnasium wrappers.

Every built-in task (``TASKS``: the hoppers and biped of docs/method.md, the torso-mass hoppers, the biped with
100 N*m ankles, Gymnasium's Hopper-v5 and Walker2d-v5 bodies) is registered with Gymnasium when this
module is imported, as ``mt_specialize/<TaskName>-v0`` (``env_id``: ``hopper_capsule`` ->
``mt_specialize/HopperCapsule-v0``); ``gym.make(id)``. ``mt-specialize list`` shows them.

``hopper_gymnasium`` runs Gymnasium's own MJCF hopper (RK4, its frictions and contacts) under the
hopper family's rules, which are Hopper-v5's (its healthy_z 0.7 = 0.56 * 1.25): the calibration
benchmark's link between our trainer and Gymnasium's Hopper-v5. ``walker2d_forward`` /
``walker2d_backward`` run Gymnasium's Walker2d-v5 model (robot ``gymnasium:walker2d``: armature 0.01,
damping 0.1, ankle gear 100, RK4, foot friction 1.9) under the biped family's rules (reward, control
cost 0.1, termination), the biped tasks' counterparts on Walker2d's body. Both keep their file's
physics under every profile; run-wide physics settings still change them.

Physics settings (``mt_specialize.envs.physics``): ``TaskSpec.physics`` holds the settings a task sets
itself; the rest take their defaults, which are the robots as docs/method.md#robots-and-tasks describes them.

The ``*_ankle100`` tasks are the built-in biped with Walker2d's ankle torque scale (100 instead of 20 N*m
per unit action), a sensitivity variant: with its 20 N*m ankles forward walking fails in MuJoCo
for every method (results/probes/walker2d_body/).

The rules read the robot's named quantities (``planar``: x position, torso height, pitch, ...).
One robot of one task is a ``TaskRobot``; its step is ``planar.control_step`` (``ctrl = action``,
zero warm-start, ``frame_skip`` substeps) followed by the task's reward and termination. The
Gymnasium env ``TaskEnv`` and the simulator node step through it; the batched engine (``vec_env``)
runs the same steps through ``mujoco.rollout`` and the same rules, bit-identical to it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import gymnasium as gym
import mujoco
import numpy as np

from mt_specialize.envs import engine
from mt_specialize.envs import physics as physics_settings
from mt_specialize.envs.families import FAMILIES, get_family
from mt_specialize.envs import planar, robots

VELOCITY_CLIP = 10.0  # observation clip for qvel
DEFAULT_ALIVE_BONUS = 1.0


def _finite(name: str, value, *, positive: bool = False, nonneg: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or (positive and v <= 0) or (nonneg and v < 0):
        what = "positive" if positive else "non-negative" if nonneg else "finite"
        raise ValueError(f"{name} must be a {what} finite number, got {value!r}")
    return v


@dataclass(frozen=True)
class TaskSpec:
    """One task: a robot (built-in name or URDF path), reward and termination of its family.

    direction: +1 rewards +x velocity, -1 rewards -x velocity. speed_cap (m/s, None = none): the speed
    rewarded is at most this (dm_control's walker ``walk`` rewards speed up to 1 m/s and not beyond; a
    capped gait is slow enough to be handed to another task). overspeed_penalty (>= 0, needs speed_cap):
    each m/s beyond the cap costs this much reward per step instead of being neutral, so the speed term
    peaks at the cap (1: a tent, as a velocity-tracking reward such as legged_gym's
    ``tracking_lin_vel`` peaks at the commanded speed). torso_mass (kg), mass_scale and gears
    (torque scale per actuated joint, N*m per unit action, in URDF joint order) modify the robot
    (see ``robots.build_model``). dt = timestep * frame_skip (s). physics: the physics settings this
    task sets (setting -> value, ``mt_specialize.envs.physics``); unset ones take their defaults.
    """

    name: str
    robot: str
    family: str = "hopper"
    direction: int = 1
    alive_bonus: float = DEFAULT_ALIVE_BONUS
    ctrl_cost: float = FAMILIES["hopper"].ctrl_cost
    torso_mass: float | None = None
    mass_scale: float = 1.0
    gears: tuple[float, ...] | None = None
    frame_skip: int = 4
    horizon: int = 1000
    reset_noise: float = 0.005
    physics: dict | None = field(default=None, hash=False)
    speed_cap: float | None = None
    overspeed_penalty: float = 0.0
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"task name must be a non-empty string, got {self.name!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"task {self.name!r}: family {self.family!r}, allowed {list(FAMILIES)}")
        if isinstance(self.direction, bool) or self.direction not in (1, -1):
            raise ValueError(f"task {self.name!r}: direction {self.direction!r}, allowed +1 or -1")
        _finite(f"task {self.name!r}: alive_bonus", self.alive_bonus)
        _finite(f"task {self.name!r}: ctrl_cost", self.ctrl_cost, nonneg=True)
        _finite(f"task {self.name!r}: mass_scale", self.mass_scale, positive=True)
        _finite(f"task {self.name!r}: reset_noise", self.reset_noise, nonneg=True)
        if self.speed_cap is not None:
            object.__setattr__(self, "speed_cap", _finite(f"task {self.name!r}: speed_cap (m/s)", self.speed_cap,
                                                          positive=True))
        object.__setattr__(self, "overspeed_penalty", _finite(f"task {self.name!r}: overspeed_penalty",
                                                              self.overspeed_penalty, nonneg=True))
        if self.overspeed_penalty > 0 and self.speed_cap is None:
            raise ValueError(f"task {self.name!r}: overspeed_penalty {self.overspeed_penalty} needs a speed_cap "
                             "(the speed beyond which it applies)")
        if self.torso_mass is not None:
            _finite(f"task {self.name!r}: torso_mass", self.torso_mass, positive=True)
        if self.gears is not None:
            if isinstance(self.gears, (str, bytes)) or not hasattr(self.gears, "__len__"):
                raise ValueError(f"task {self.name!r}: gears must be a list of torques (N*m per unit action), "
                                 f"one per actuated joint, got {self.gears!r}")
            object.__setattr__(self, "gears", tuple(_finite(f"task {self.name!r}: gears[{i}]", g, positive=True)
                                                    for i, g in enumerate(self.gears)))
        for key in ("frame_skip", "horizon"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"task {self.name!r}: {key} must be a positive integer, got {value!r}")
        if not isinstance(self.robot, str):
            object.__setattr__(self, "robot", str(self.robot))
        robot = robots.get_robot(self.robot)  # unknown robot names fail here
        object.__setattr__(self, "physics", physics_settings.validate(
            self.physics, f"task {self.name!r}: physics", self.family, mjcf=robot.mjcf is not None))
        if isinstance(self.physics.get("foot_friction"), list) or self.resolved_physics["knee_limit_penalty"] > 0:
            try:
                self._model_info()  # the number of feet and the knee joint are checked here
            except ValueError as exc:
                raise ValueError(f"task {self.name!r}: {exc}") from None
        engine.check(self)  # what the task's physics engine needs (e.g. DART: dartpy, settings it has)

    @property
    def resolved_physics(self) -> dict:
        """Every physics setting of this task: its defaults updated by ``physics``."""
        return {**robots.default_physics(self.robot, self.family), **self.physics}

    def build_model(self) -> mujoco.MjModel:
        """A fresh compiled MuJoCo model of this task's robot."""
        return robots.build_model(self.robot, torso_mass=self.torso_mass, mass_scale=self.mass_scale,
                                  gears=self.gears, physics=self.physics)

    def _model_info(self) -> dict:
        if "nq" not in self._cache:
            model = self.build_model()
            planar.check_planar_root(model, f"task {self.name!r}: robot {self.robot!r}")
            self._cache.update(nq=model.nq, nv=model.nv, nu=model.nu, timestep=model.opt.timestep,
                               start_height=float(planar.height(model.qpos0)), qpos0=model.qpos0.copy())
            knee = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, physics_settings.KNEE_JOINT)
            if knee >= 0:
                self._cache.update(knee_qpos=int(model.jnt_qposadr[knee]), knee_range=tuple(model.jnt_range[knee]))
            elif self.resolved_physics["knee_limit_penalty"] > 0:
                raise ValueError(f"knee_limit_penalty needs a knee joint named {physics_settings.KNEE_JOINT!r}; "
                                 f"robot {self.robot!r} has none")
        return self._cache

    def knee_penalty(self, qpos: np.ndarray) -> np.ndarray:
        """(N,) reward penalty: knee_limit_penalty where the knee angle of qpos (N, nq) is within
        KNEE_LIMIT_MARGIN rad of either limit (the authors' hopper.py), else 0."""
        penalty = self.resolved_physics["knee_limit_penalty"]
        qpos = np.asarray(qpos, dtype=np.float64)
        if penalty == 0:
            return np.zeros(qpos.shape[:-1])
        info = self._model_info()
        return knee_penalty(qpos[..., info["knee_qpos"]], *info["knee_range"], penalty)

    @property
    def obs_dim(self) -> int:
        """qpos[1:] and qvel: nq - 1 + nv."""
        info = self._model_info()
        return info["nq"] - 1 + info["nv"]

    @property
    def act_dim(self) -> int:
        return self._model_info()["nu"]

    @property
    def dt(self) -> float:
        """Control period (s) = timestep * frame_skip."""
        return self._model_info()["timestep"] * self.frame_skip

    @property
    def start_height(self) -> float:
        """Torso height (m) at qpos0, the reference of the hopper's height termination."""
        return self._model_info()["start_height"]

    def observation(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """(N, obs_dim) = [qpos without x, clip(qvel, -10, 10)] from qpos (N, nq), qvel (N, nv)."""
        return observation(qpos, qvel)

    def reward(self, x_before: np.ndarray, x_after: np.ndarray, action: np.ndarray,
               qpos: np.ndarray | None = None) -> np.ndarray:
        """(N,) = the speed term (``reward``) + alive_bonus - ctrl_cost * |action|^2 - knee penalty; x in
        m, action (N, nu) unclipped; qpos (N, nq) after the step, needed when knee_limit_penalty > 0."""
        out = reward(x_before, x_after, action, self.direction, self.alive_bonus, self.ctrl_cost, self.dt,
                     self.speed_cap, self.overspeed_penalty)
        if self.resolved_physics["knee_limit_penalty"] > 0:
            if qpos is None:
                raise ValueError(f"task {self.name!r} has a knee_limit_penalty: reward() needs qpos after the step")
            out = out - self.knee_penalty(qpos)
        return out

    def terminated(self, qpos: np.ndarray, qvel: np.ndarray, start_height: float | None = None) -> np.ndarray:
        """bool (N,): the family's termination rule on qpos (N, nq), qvel (N, nv).

        start_height (m, default this task's) scales the hopper's minimum torso height.
        """
        return self.termination_cause(qpos, qvel, start_height) > 0

    def termination_cause(self, qpos: np.ndarray, qvel: np.ndarray, start_height: float | None = None) -> np.ndarray:
        """int8 (N,): the first termination rule qpos (N, nq), qvel (N, nv) break (0 none;
        ``END_CAUSES``); start_height as ``terminated``."""
        physics = self.resolved_physics
        return termination_cause(self.family, qpos, qvel, self.start_height if start_height is None else start_height,
                                 physics["state_limit"], physics["state_velocity_scale"])

    def sample_reset(self, model: mujoco.MjModel, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Initial states: qpos (n, nq) = qpos0 + U(+-reset_noise), then qvel (n, nv) = U(+-reset_noise)."""
        noise = self.reset_noise
        qpos = model.qpos0[None, :] + rng.uniform(-noise, noise, size=(n, model.nq))
        qvel = rng.uniform(-noise, noise, size=(n, model.nv))
        return qpos, qvel


# -- the formulas, on arrays of any leading shape (one task's (N, ...) or T tasks' (T, E, ...) with
# per-task parameters shaped (T, 1)); TaskSpec's methods and the batched engine both call these. ----
def observation(qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """(..., nq - 1 + nv) = [qpos without x (``planar.without_x``), clip(qvel, -10, 10)] from
    qpos (..., nq), qvel (..., nv)."""
    qpos, qvel = np.asarray(qpos, dtype=np.float64), np.asarray(qvel, dtype=np.float64)
    return np.concatenate([planar.without_x(qpos), np.clip(qvel, -VELOCITY_CLIP, VELOCITY_CLIP)], axis=-1)


def reward(x_before, x_after, action, direction, alive_bonus, ctrl_cost, dt, speed_cap=None,
           overspeed_penalty=0.0) -> np.ndarray:
    """(...) = min(p, speed_cap) - overspeed_penalty * max(p - speed_cap, 0) + alive_bonus
    - ctrl_cost * |action|^2, with p = direction * vx.

    x_before, x_after (...) in m; action (..., nu) unclipped; dt (s) the control period; speed_cap
    (m/s) None or inf for none; overspeed_penalty (per m/s beyond the cap) 0 for none; the parameters
    are scalars or arrays broadcasting against (...).
    """
    velocity = planar.mean_speed(x_before, x_after, dt)
    ctrl = np.sum(np.square(np.asarray(action, dtype=np.float64)), axis=-1)
    progress = direction * velocity
    if speed_cap is not None:
        over = progress - speed_cap
        progress = np.minimum(progress, speed_cap)
        if np.any(overspeed_penalty):
            progress = progress - overspeed_penalty * np.maximum(over, 0.0)
    return progress + alive_bonus - ctrl_cost * ctrl


def knee_penalty(knee, low, high, penalty) -> np.ndarray:
    """(...) = penalty where the knee angle ``knee`` (...) (rad) is within KNEE_LIMIT_MARGIN of its
    limits [low, high], else 0 (the authors' ``q_lower - q > -0.05`` or ``q_upper - q < 0.05``)."""
    knee = np.asarray(knee, dtype=np.float64)
    margin = physics_settings.KNEE_LIMIT_MARGIN
    near = (low - knee > -margin) | (high - knee < margin)
    return np.where(near, np.asarray(penalty, dtype=np.float64), 0.0)


_FAMILY_LIMIT = object()

# Why an episode (or a trajectory) ended, as the codes ``termination_cause`` and the batched env's
# ``StepResult.end_cause`` give them: 0 = it goes on; 1-4 = the family's termination rules, checked in
# this order (an episode that breaks two rules at once counts under the first); 5 = the time limit
# (``horizon``); 6 = a task switch handed the robot to another task (the trajectory is cut, the
# robot goes on). ``END_CAUSES[code - 1]`` names a code.
END_CAUSES = ("non_finite", "state_limit", "height", "pitch", "time_limit", "switch")
NON_FINITE, STATE_LIMIT, HEIGHT, PITCH, TIME_LIMIT, SWITCH = range(1, 7)


def termination_cause(family: str, qpos: np.ndarray, qvel: np.ndarray, start_height,
                      state_limit=_FAMILY_LIMIT, state_velocity_scale=1.0) -> np.ndarray:
    """int8 (...): which of ``family``'s termination rules the state qpos (..., nq), qvel (..., nv)
    breaks: 0 none, else the first of NON_FINITE, STATE_LIMIT, HEIGHT, PITCH (``END_CAUSES``).

    start_height (m; scalar or broadcasting against (...)) scales the hopper's minimum torso height.
    state_limit: the episode ends when any |``planar.without_x_and_height([qpos, state_velocity_scale *
    qvel])``| >= it (pitch, joint angles, every velocity); None or inf = no such rule; scalar or
    broadcasting against (...); default the family's (100 hopper, none biped). state_velocity_scale
    (scalar or broadcasting against (...)): qvel's factor in that state vector (1 raw; dart-env's 0.1).
    """
    rules = get_family(family)
    if state_limit is _FAMILY_LIMIT:
        state_limit = rules.state_limit
    state_limit = np.inf if state_limit is None else np.asarray(state_limit, dtype=np.float64)
    qpos, qvel = np.asarray(qpos, dtype=np.float64), np.asarray(qvel, dtype=np.float64)
    state = planar.state_vector(qpos, qvel)
    non_finite = ~np.all(np.isfinite(state), axis=-1)
    height, pitch = planar.height(qpos), planar.pitch(qpos)
    scale = np.asarray(state_velocity_scale, dtype=np.float64)
    if np.any(scale != 1.0):
        state = planar.state_vector(qpos, qvel * np.expand_dims(scale, -1))
    with np.errstate(invalid="ignore"):
        over_limit = np.any(np.abs(planar.without_x_and_height(state)) >= np.expand_dims(state_limit, -1), axis=-1)
        too_low, tilted = rules.height_out(height, start_height), rules.tilted(pitch)
    # the first rule broken wins: np.select takes the first true condition
    return np.select([non_finite, over_limit, too_low, tilted], [NON_FINITE, STATE_LIMIT, HEIGHT, PITCH],
                     0).astype(np.int8)


def terminated(family: str, qpos: np.ndarray, qvel: np.ndarray, start_height,
               state_limit=_FAMILY_LIMIT, state_velocity_scale=1.0) -> np.ndarray:
    """bool (...): ``family``'s termination rule on qpos (..., nq), qvel (..., nv) (any
    ``termination_cause``; the arguments are its)."""
    return termination_cause(family, qpos, qvel, start_height, state_limit, state_velocity_scale) > 0


def _hopper(name: str, robot: str, **kw) -> TaskSpec:
    return TaskSpec(name, robot, "hopper", 1, DEFAULT_ALIVE_BONUS, FAMILIES["hopper"].ctrl_cost, **kw)


TORSO_MASSES = (3, 8, 14, 15)  # kg, the torso-mass experiments' hoppers
# hip, knee, ankle of each leg, N*m per unit action: Walker2d's ankles (the built-in biped: 100, 100, 20)
BIPED_ANKLE100_GEARS = (100.0, 100.0, 100.0, 100.0, 100.0, 100.0)
TASKS: dict[str, TaskSpec] = {
    "hopper_capsule": _hopper("hopper_capsule", "hopper_capsule"),
    "hopper_box": _hopper("hopper_box", "hopper_box"),
    "hopper_ellipsoid": _hopper("hopper_ellipsoid", "hopper_ellipsoid"),
    "biped_forward": TaskSpec("biped_forward", "biped", "biped", 1, DEFAULT_ALIVE_BONUS, FAMILIES["biped"].ctrl_cost),
    "biped_backward": TaskSpec("biped_backward", "biped", "biped", -1, DEFAULT_ALIVE_BONUS, FAMILIES["biped"].ctrl_cost),
    **{f"hopper_torso{m}": _hopper(f"hopper_torso{m}", "hopper_capsule", torso_mass=float(m))
       for m in TORSO_MASSES},
    "biped_forward_ankle100": TaskSpec("biped_forward_ankle100", "biped", "biped", 1, DEFAULT_ALIVE_BONUS,
                                       FAMILIES["biped"].ctrl_cost, gears=BIPED_ANKLE100_GEARS),
    "biped_backward_ankle100": TaskSpec("biped_backward_ankle100", "biped", "biped", -1, DEFAULT_ALIVE_BONUS,
                                        FAMILIES["biped"].ctrl_cost, gears=BIPED_ANKLE100_GEARS),
    # Gymnasium's Hopper-v5 under every profile: its settings are explicit (only run-wide overrides change them)
    "hopper_gymnasium": _hopper("hopper_gymnasium", "gymnasium:hopper",
                                physics=robots.default_physics("gymnasium:hopper")),
    # Gymnasium's Walker2d-v5 model under the biped's rules, likewise as the file has it under every profile
    **{f"walker2d_{way}": TaskSpec(f"walker2d_{way}", "gymnasium:walker2d", "biped", direction, DEFAULT_ALIVE_BONUS,
                                   FAMILIES["biped"].ctrl_cost, physics=robots.default_physics("gymnasium:walker2d"))
       for way, direction in (("forward", 1), ("backward", -1))},
}

def env_id(task_name: str) -> str:
    """The Gymnasium id of built-in task ``task_name``: ``hopper_torso3`` -> ``mt_specialize/HopperTorso3-v0``."""
    return f"mt_specialize/{''.join(word.capitalize() for word in task_name.split('_'))}-v0"


ENV_IDS: dict[str, str] = {name: env_id(name) for name in TASKS}  # every built-in task, registered below


def get_task(name: str | TaskSpec) -> TaskSpec:
    """The built-in task ``name`` (a TaskSpec passes through); ValueError lists the allowed names."""
    if isinstance(name, TaskSpec):
        return name
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: allowed are {sorted(TASKS)}")
    return TASKS[name]


@dataclass(frozen=True)
class Transition:
    """One control step of one robot: its reward, whether the task's termination rule fired, the
    torso's x position before and after the step (m), the mean forward speed between (m/s), and
    which termination rule fired (``END_CAUSES`` code, 0 none)."""

    reward: float
    terminated: bool
    x_before: float
    x_after: float
    mean_speed: float
    cause: int = 0


class TaskRobot:
    """One robot of one task: its MuJoCo model and data, reset and stepped under the task's rules.

    ``step`` is the one single-robot control step (the task's engine's: ``engine.robot_stepper``, MuJoCo's
    ``planar.control_step`` by default; ``data`` holds the state on every engine), then the task's reward
    and termination; ``TaskEnv`` and the simulator node both step through it. The current state's named
    quantities: ``x()``, ``height()``, ``pitch()``, ``speed()`` (``planar``).
    """

    def __init__(self, task: str | TaskSpec):
        self.task = get_task(task)
        self.model = self.task.build_model()
        self.data = mujoco.MjData(self.model)
        self.dt = self.task.dt  # s per control step: timestep x frame_skip
        self.stepper = engine.robot_stepper(self.task, self.model, self.task.frame_skip)

    def reset(self, rng: np.random.Generator) -> None:
        """A fresh state from the task's reset noise (``TaskSpec.sample_reset`` with ``rng``)."""
        qpos, qvel = self.task.sample_reset(self.model, rng, 1)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:], self.data.qvel[:] = qpos[0], qvel[0]
        mujoco.mj_forward(self.model, self.data)

    def observation(self) -> np.ndarray:
        """(obs_dim,) the task's observation of the current state."""
        return self.task.observation(self.data.qpos[None], self.data.qvel[None])[0]

    def step(self, action: np.ndarray) -> Transition:
        """One control step with action (act_dim,) (MuJoCo clamps it to [-1, 1]; the control cost
        takes it unclipped)."""
        action = np.asarray(action, dtype=np.float64).reshape(self.task.act_dim)
        x_before = self.x()
        self.stepper.step(self.data, action)
        x_after = self.x()
        qpos, qvel = self.data.qpos[None], self.data.qvel[None]
        reward = float(self.task.reward(np.array([x_before]), np.array([x_after]), action[None], qpos)[0])
        cause = int(self.task.termination_cause(qpos, qvel)[0])
        return Transition(reward, cause > 0, x_before, x_after, float(planar.mean_speed(x_before, x_after, self.dt)),
                          cause)

    def x(self) -> float:
        """Torso x position (m)."""
        return float(planar.x_position(self.data.qpos))

    def height(self) -> float:
        """Torso height (m)."""
        return float(planar.height(self.data.qpos))

    def pitch(self) -> float:
        """Torso pitch (rad)."""
        return float(planar.pitch(self.data.qpos))

    def speed(self) -> float:
        """Forward speed of the torso now (m/s)."""
        return float(planar.speed(self.data.qvel))


class TaskEnv(gym.Env):
    """One environment of one task (a ``TaskRobot``). Observation (obs_dim,) float64; action
    (act_dim,) in [-1, 1]. ``model`` and ``data`` are the robot's."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 125}

    def __init__(self, task: str | TaskSpec = "hopper_capsule", render_mode: str | None = None,
                 width: int = 480, height: int = 480):
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode {render_mode!r}, allowed {[None, *self.metadata['render_modes']]}")
        self.task = get_task(task)
        self.robot = TaskRobot(self.task)
        self.model, self.data = self.robot.model, self.robot.data
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": int(round(1.0 / self.task.dt))}
        self._size = (width, height)
        self._renderer = None
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.task.obs_dim,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.task.act_dim,), np.float32)
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.robot.reset(self.np_random)
        self._steps = 0
        return self.robot.observation(), {"x_position": self.robot.x()}

    def step(self, action):
        step = self.robot.step(action)
        self._steps += 1
        truncated = self._steps >= self.task.horizon
        info = {"x_position": step.x_after, "x_velocity": step.mean_speed}
        if step.terminated or truncated:  # why the episode ended (tasks.END_CAUSES)
            info["end_cause"] = END_CAUSES[(step.cause or TIME_LIMIT) - 1]
        return self.robot.observation(), step.reward, step.terminated, truncated, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        from mt_specialize.envs import render

        if self._renderer is None:
            self._renderer = render.make_renderer(self.model, *self._size)
        return render.render_data(self._renderer, self.model, self.data)

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def register_envs() -> None:
    """Register every ENV_IDS entry with Gymnasium (idempotent)."""
    for task, env_id in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="mt_specialize.envs.tasks:TaskEnv", kwargs={"task": task})


register_envs()
