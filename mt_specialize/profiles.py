"""Profiles: named bundles of settings, each setting with its source. Imports nothing (no torch, no MuJoCo).

A run's ``profile`` (``TrainConfig.profile``, ``--profile``) fills in every training setting left null
(``TRAINING``) and the robots' physics (``PHYSICS``: settings for every task, per robot family, and
changes to built-in tasks); a setting given explicitly overrides its profile's value. A profile is
applied by ``TrainConfig.resolved`` (training) and ``experiments.apply_profile`` (physics, through
``envs.physics``); this module only holds the bundles.

- ``paper``: the paper's experiment as its authors ran it (VincentYu68/baselines
  ``baselines/split_net/pposgd_split.py`` at 8ab77c2; VincentYu68/dart-env ``gym/envs/dart/`` at
  e652dbbe / b15a4ed2), the robots emulated in MuJoCo. docs/paper_profile_rules.md checks every episode,
  reward and rollout rule against their lines.
- ``paper_dart``: ``paper`` on the DART engine, the authors' simulator (docs/engines.md).
- ``mujoco``: physically correct robots with Gymnasium Hopper-v5 / Walker2d-v5 contact conventions.
- ``none``: every setting at its own default (the robots of the first grid).
"""
from __future__ import annotations

from typing import Any

NAMES = ("paper", "paper_dart", "mujoco", "none")
DEFAULT = "mujoco"  # the profile of a run, of the learner and of the simulator when none is given

# -- the authors' numbers the physics half uses ------------------------------------------------------
PAPER_KNEE_PENALTY = 0.5 * 1.5  # dart-env hopper.py: reward -= 5e-1 * 1.5 near a knee limit
PAPER_STATE_LIMIT = 100.0  # dart-env hopper.py and walker2d.py: (np.abs(s[2:]) < 100).all()
# dart-env gym/envs/dart/dart_env.py state_vector(): np.concatenate([q, dq / 10.0]) (commit eb760bc1,
# "divide velocity by 10 to regularize the range of state"; so at e652dbbe and b15a4ed2). The walker's
# only velocity rule is walker2d.py's np.abs(s[2:]) < 100 on it; hopper.py adds np.abs(dq) < 100 on
# the raw dq, which is the tighter rule for the hopper, so its scale stays 1.
DART_ENV_STATE_VELOCITY_SCALE = 0.1

# -- the training half: TrainConfig fields (and ppo.optimizer, ppo.advantage_norm) left null ----------
TRAINING: dict[str, dict[str, Any]] = {
    # The paper's authors' code (VincentYu68/baselines, baselines/split_net/pposgd_split.py at 8ab77c2):
    "paper": {
        "optimizer": "per_task",          # task_adams: one MpiAdam per task, stepping in turn, shared entries synced
        "revert_drop_bound": 300.0,       # reward_drop_bound=300 (learn()'s default at 8ab77c2)
        "append_mode": "normalized",      # the one-hot is part of the env observation, so the normaliser sees it
        "score_statistic": "std",         # np.ma.std across tasks (population std), mean over the last 10 iterations
        "split_count": "floor_nonzero",   # int(split_percent * n) top entries, only those with std > 0
        # traj_segment_generator / add_vtarg_and_adv: gym's TimeLimit done at 1000 steps is `new`,
        # the end of the episode: nonterminal = 1 - new[t + 1], no bootstrap from the value
        "time_limit": "terminal",
        # 4 MPI workers (run_script_hopper.sh at 8ab77c2: mpirun -np 4 ... --batch 1000 per worker; the
        # biped's 2000 per worker: the result directories read by plot_benchmark_offline.py, _fwdbwd_2000),
        # each stepping one env per task (traj_segment_generator(pis[t], copy.deepcopy(env),
        # timesteps_per_batch // task_size, ...)): 4 envs per task, segments of batch / (tasks x 4) steps
        # (333 on the hoppers, 1000 on the biped, 500 on the torso-mass pairs)
        "envs_per_task": 4,
        # atarg = (atarg - atarg.mean()) / atarg.std() on each worker's segment of each task
        "advantage_norm": "per_task_env",
    },
    # docs/method.md's algorithm as first built: mixed-task minibatches, no revert, raw one-hot, variance score
    "mujoco": {"optimizer": "mixed", "revert_drop_bound": "off", "append_mode": "raw",
               "score_statistic": "variance", "split_count": "round", "time_limit": "bootstrap",
               "envs_per_task": 16, "advantage_norm": "per_task_iteration"},
    "none": {"optimizer": "mixed", "revert_drop_bound": "off", "append_mode": "raw",
             "score_statistic": "variance", "split_count": "round", "time_limit": "bootstrap",
             "envs_per_task": 16, "advantage_norm": "per_task_iteration"},
}
# the paper profile on the DART engine trains as the paper profile does (its physics adds engine: dart)
TRAINING["paper_dart"] = dict(TRAINING["paper"])

# -- the physics half: envs.physics settings for every task, per family, and built-in task changes ----
PHYSICS: dict[str, dict] = {
    "paper": {  # the authors' DART robots (dart-env's .skel files, hopper.py, walker2d.py)
        "settings": {"armature": 0.0, "inertia": "dart", "friction": 1.0, "foot_friction": None,
                     "contact": "stiff", "joint_limits": "hard", "torso_inertia": "unchanged",
                     "state_limit": PAPER_STATE_LIMIT},
        "family": {"hopper": {"knee_limit_penalty": PAPER_KNEE_PENALTY},
                   "biped": {"state_velocity_scale": DART_ENV_STATE_VELOCITY_SCALE}},
        # built-in task name -> TaskSpec field changes (the authors' torso masses, kg)
        "tasks": {"hopper_torso3": {"torso_mass": 3.3}, "hopper_torso8": {"torso_mass": 8.5},
                  "hopper_torso14": {"torso_mass": 14.35}},
    },
    "mujoco": {  # physically correct robots with Gymnasium Hopper-v5 / Walker2d-v5 contact frictions
        "settings": {"armature": 1.0, "inertia": "true", "contact": "default", "joint_limits": "soft",
                     "torso_inertia": "scaled", "knee_limit_penalty": 0.0},
        # hopper.xml: body geoms 0.9 on a floor of MuJoCo's default 1.0 -> 1.0 in contact; foot 2.0.
        # walker2d.xml: body geoms 0.9 on a 0.7 floor -> 0.9; right foot 0.9, left foot 1.9.
        "family": {"hopper": {"friction": 1.0, "foot_friction": 2.0},
                   "biped": {"friction": 0.9, "foot_friction": [0.9, 1.9]}},
        "tasks": {},
    },
    "none": {"settings": {}, "family": {}, "tasks": {}},
}
# the paper profile simulated by DART itself: whatever ``paper`` sets, on the dart engine
PHYSICS["paper_dart"] = {**PHYSICS["paper"], "settings": {**PHYSICS["paper"]["settings"], "engine": "dart"}}

# Settings a profile gained after runs were recorded, with the value every run had before: a run's
# config.yaml that does not name one ran at that value, and resumes so (``config.recorded_before``).
# Keys are TrainConfig fields or ``ppo.<field>``. (A physics setting a run's recorded task_physics
# does not name ran at the robot's default: ``experiments.with_unrecorded_defaults``.)
RECORDED_BEFORE = {"time_limit": "bootstrap", "ppo.advantage_norm": "per_task_iteration", "envs_per_task": 16}

assert set(TRAINING) == set(PHYSICS) == set(NAMES), "every profile has a training and a physics half"
