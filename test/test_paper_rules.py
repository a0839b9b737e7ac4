"""The paper profile's episode rules as the authors' dart-env wrote them, and why each episode ends.

- the biped's state limit bounds dart-env's ``state_vector()`` = ``[q, dq / 10]`` (walker2d.py), the
  hopper's the raw dq as well (hopper.py);
- every ended trajectory is counted under the rule that ended it, the same in the batched and the
  single env.
"""
from __future__ import annotations

import numpy as np
import pytest

from mt_specialize.envs import planar, tasks
from mt_specialize.envs.tasks import END_CAUSES, TaskRobot, TaskSpec
from mt_specialize.envs.vec_env import MultiTaskVecEnv
from mt_specialize.experiments import profiled_task


def _set_state(venv, qpos, qvel):
    venv.state[:] = 0.0
    venv.qpos()[:] = qpos
    venv.qvel()[:] = qvel


def _joint_velocity_state(task: TaskSpec, joint_speed: float):
    """(qpos, qvel): the start pose, a knee turning at ``joint_speed`` rad/s (qvel index 4)."""
    model = task.build_model()
    qvel = np.zeros(model.nv)
    qvel[4] = joint_speed
    return model.qpos0.copy(), qvel


@pytest.mark.parametrize("speed, ends_before, ends_now", [(150.0, True, False), (999.0, True, False),
                                                           (1000.0, True, True), (50.0, False, False)])
def test_the_paper_bipeds_velocity_rule_is_dart_envs_scaled_state_vector(speed, ends_before, ends_now):
    """A biped joint at 150 rad/s broke the old rule (raw qvel against 100) but not dart-env's (qvel / 10
    against 100); 1000 rad/s breaks both. The rule as a state check, not after a step."""
    now = profiled_task("biped_forward", "paper")
    before = profiled_task("biped_forward", "paper", {"state_velocity_scale": 1.0})
    assert now.resolved_physics["state_velocity_scale"] == 0.1 and now.resolved_physics["state_limit"] == 100.0
    qpos, qvel = _joint_velocity_state(now, speed)
    cause = tasks.STATE_LIMIT
    assert now.termination_cause(qpos[None], qvel[None])[0] == (cause if ends_now else 0)
    assert before.termination_cause(qpos[None], qvel[None])[0] == (cause if ends_before else 0)


def _authors_hopper_done(qpos, qvel, start_height):
    """dart-env hopper.py (b15a4ed2): s = [q, dq / 10]; done = not (isfinite(s) and |s[2:]| < 100 and
    |dq| < 100 and height > 0.56 * start height and |ang| < 0.2), on our named quantities."""
    s = np.concatenate([qpos, qvel / 10.0], axis=-1)
    healthy = (np.isfinite(s).all(axis=-1) & (np.abs(s[..., 2:]) < 100).all(axis=-1)
               & (np.abs(qvel) < 100).all(axis=-1) & (planar.height(qpos) > 0.56 * start_height)
               & (np.abs(planar.pitch(qpos)) < 0.2))
    return ~healthy


def test_the_paper_hoppers_rule_is_the_authors_and_unchanged():
    """On 4000 states around the limits, the paper hopper's termination is hopper.py's rule (which the
    previous code also computed: raw qvel against 100), in the single and the batched env."""
    task = profiled_task("hopper_capsule", "paper")
    assert task.resolved_physics["state_velocity_scale"] == 1.0
    rng = np.random.default_rng(0)
    model = task.build_model()
    n = 4000
    qpos = model.qpos0 + rng.normal(0, 0.15, (n, model.nq))
    qvel = rng.normal(0, 1, (n, model.nv)) * rng.choice([1.0, 60.0, 120.0], (n, 1))
    qvel[rng.random(n) < 0.01, 2] = np.nan
    expected = _authors_hopper_done(qpos, qvel, task.start_height)
    assert 0.1 < expected.mean() < 0.9
    assert np.array_equal(task.terminated(qpos, qvel), expected)
    previous = tasks.terminated("hopper", qpos, qvel, task.start_height, 100.0)  # the rule's old signature
    assert np.array_equal(previous, expected)


def _scripted_states(task: TaskSpec):
    """(name, qpos, qvel, expected cause) of one control step from states that end an episode by each
    rule (and one that does not)."""
    model = task.build_model()
    q0 = model.qpos0.copy()
    out = []
    out.append(("upright", q0.copy(), np.zeros(model.nv), 0))
    q = q0.copy()
    q[planar.HEIGHT] = 2.1  # in the air above the biped's (0.8, 2.0) band
    out.append(("high", q, np.zeros(model.nv), tasks.HEIGHT))
    q = q0.copy()
    q[planar.PITCH] = 1.3
    out.append(("tilted", q, np.zeros(model.nv), tasks.PITCH))
    v = np.zeros(model.nv)
    v[planar.X] = 3000.0  # m/s along x in the air: x velocity / 10 = 300 >= 100
    q = q0.copy()
    q[planar.HEIGHT] += 0.3
    out.append(("fast", q, v, tasks.STATE_LIMIT))
    return out


def test_each_scripted_episode_is_counted_under_the_rule_that_ended_it_in_both_engines():
    """One step from each scripted state: the batched env's end_cause, the single env's Transition.cause
    and (for the last step of the horizon) the time limit name the same rule."""
    task = profiled_task("biped_forward", "paper")
    states = _scripted_states(task)
    venv = MultiTaskVecEnv([task], envs_per_task=len(states), seed=0, nthread=1)
    _set_state(venv, np.stack([s[1] for s in states])[None], np.stack([s[2] for s in states])[None])
    venv.episode_length[:] = 0
    venv.episode_length[0, 0] = task.horizon - 1  # the upright one reaches the time limit this step
    result = venv.step(np.zeros((1, len(states), venv.act_dim)))
    expected = [tasks.TIME_LIMIT] + [s[3] for s in states[1:]]
    assert list(result.end_cause[0]) == expected
    assert list(result.terminated[0]) == [False] + [True] * (len(states) - 1)
    assert list(result.truncated[0]) == [True] + [False] * (len(states) - 1)
    for (name, qpos, qvel, cause), batched in zip(states, result.end_cause[0]):
        robot = TaskRobot(task)
        robot.data.qpos[:], robot.data.qvel[:] = qpos, qvel
        with np.errstate(invalid="ignore"):
            step = robot.step(np.zeros(task.act_dim))
        assert step.cause == cause, name
        assert step.terminated == (cause > 0)
    assert [END_CAUSES[c - 1] for c in expected] == ["time_limit", "height", "pitch", "state_limit"]
    # a non-finite state (MuJoCo resets its data when a step goes non-finite, so checked as a state):
    # counted as non-finite before any other rule, in both engines' rule
    q, v = states[1][1].copy(), np.zeros(venv.nv)
    v[3] = np.nan
    assert task.termination_cause(q[None], v[None])[0] == tasks.NON_FINITE
    assert venv._termination_cause(q[None, None], v[None, None])[0, 0] == tasks.NON_FINITE


def test_a_task_switch_is_counted_as_a_switch():
    fwd, bwd = profiled_task("biped_forward", "paper"), profiled_task("biped_backward", "paper")
    venv = MultiTaskVecEnv([fwd, bwd], envs_per_task=8, seed=1, nthread=1, switch_prob=0.999)
    venv.reset()
    result = venv.step(np.zeros((2, 8, venv.act_dim)))
    assert result.switched.any()
    assert np.array_equal(result.end_cause == tasks.SWITCH, result.switched)
