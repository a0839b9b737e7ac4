"""The batched mode's grouping of observations into control ticks, in-process with a clock the test
sets: which robots each ``act`` call answers, and how long a batch may wait."""
from __future__ import annotations

import numpy as np
import pytest
from rclpy.parameter import Parameter

import mt_specialize.ros.policy_server as server
from mt_specialize.ros.common import array_msg
from mt_specialize.ros.policy_server import ACTIVE_WINDOW_S, PolicyServerNode, TickBatcher

ROBOTS = ["a", "b", "c"]
OBS_DIM, ACT_DIM = 4, 2
PERIOD = 0.002  # 500 Hz
SPREAD = 1e-4  # s between two robots' observations of one tick


class RecordingPolicy:
    """Stands in for InferencePolicy: records the robots (task indices) of every act call."""

    task_names = ROBOTS
    obs_dim, act_dim = OBS_DIM, ACT_DIM

    def __init__(self):
        self.calls: list[list[int]] = []

    def act(self, obs: np.ndarray, task_index: np.ndarray) -> np.ndarray:
        self.calls.append([int(t) for t in task_index])
        return np.zeros((len(obs), ACT_DIM))


class Clock:
    """time.monotonic of the policy-server module, set by the test (s)."""

    def __init__(self):
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def batched(probe, monkeypatch):
    """(node, policy, clock, observe): a batched server for robots a, b, c, each on its own task;
    observe(robot_index, t) delivers one observation at time t."""
    clock = Clock()
    monkeypatch.setattr(server, "time", clock)
    policy = RecordingPolicy()
    node = PolicyServerNode(policy=policy, context=probe.context, parameter_overrides=[
        Parameter("robots", value=ROBOTS), Parameter("tasks", value=ROBOTS), Parameter("rate_mode", value="batched")])

    def observe(i: int, t: float) -> None:
        clock.now = t
        node._on_observation(i, array_msg(np.full(OBS_DIM, float(i))))

    yield node, policy, clock, observe
    node.destroy_node()


def tick(observe, t: float, robots=(0, 1, 2)) -> None:
    for k, i in enumerate(robots):
        observe(i, t + k * SPREAD)


def test_after_a_pause_the_batches_realign_with_the_ticks(batched):
    """The first robot after a pause is answered alone; its partners of that tick must not wait for
    its next observation (a batch spanning two ticks, every tick from then on)."""
    node, policy, clock, observe = batched
    t = 100.0
    for k in range(12):
        tick(observe, t + k * PERIOD)
    # at start b and c are not known to be active either: the same realignment, then whole ticks
    assert policy.calls == [[0], [1, 2]] + [[0, 1, 2]] * 11
    assert node._batch_timer.is_canceled()

    t += 12 * PERIOD + 2 * ACTIVE_WINDOW_S  # robots b and c count as inactive now
    policy.calls.clear()
    observe(0, t)
    assert policy.calls == [[0]]  # nobody else active: answered at once
    observe(1, t + SPREAD)
    observe(2, t + 2 * SPREAD)
    assert policy.calls == [[0]]  # b and c wait for a, active again ...
    assert not node._batch_timer.is_canceled()
    assert node._batch_timer.timer_period_ns == pytest.approx(PERIOD / 2 * 1e9, rel=0.1)  # ... half a period
    for k in range(1, 6):
        tick(observe, t + k * PERIOD)
    # a's next observation comes a period later: b's and c's are answered first, then whole ticks
    assert policy.calls == [[0], [1, 2]] + [[0, 1, 2]] * 5
    assert list(node.served) == [18, 18, 18]  # every observation answered once


def test_a_second_observation_of_a_robot_answers_the_pending_batch_first(batched):
    node, policy, clock, observe = batched
    for k in range(5):
        tick(observe, 100.0 + k * PERIOD)
    policy.calls.clear()
    t = 100.0 + 5 * PERIOD
    observe(0, t)
    observe(1, t + SPREAD)
    observe(0, t + 2 * SPREAD)  # c is late; a already sends again: its first one is not dropped
    assert policy.calls == [[0, 1]]
    observe(1, t + 3 * SPREAD)
    observe(2, t + 4 * SPREAD)
    assert policy.calls == [[0, 1], [0, 1, 2]]
    assert list(node.served) == [7, 7, 6]


def test_the_timer_answers_whoever_is_there(batched):
    node, policy, clock, observe = batched
    for k in range(5):
        tick(observe, 100.0 + k * PERIOD)
    policy.calls.clear()
    tick(observe, 100.0 + 5 * PERIOD, robots=(0, 2))
    assert policy.calls == []
    node._on_batch_timeout()  # as the executor does when the batch timer fires
    assert policy.calls == [[0, 2]]
    assert node._batch_timer.is_canceled()


def test_max_wait_is_the_timeout_or_half_the_shortest_active_period():
    batcher = TickBatcher(2, timeout=0.003)
    assert batcher.max_wait(0.0) == 0.003  # no period known yet
    for k in range(30):  # robot 0 at 500 Hz, robot 1 at 125 Hz (no batch pending: arrive() answers nothing)
        assert batcher.arrive(0, k * 0.002) == []
        if k % 4 == 0:
            assert batcher.arrive(1, k * 0.002) == []
    t = 29 * 0.002
    assert batcher.max_wait(t) == pytest.approx(0.001, rel=0.05)
    assert batcher.max_wait(t + ACTIVE_WINDOW_S) == pytest.approx(0.003)  # both inactive again
    slow = TickBatcher(2, timeout=0.003)
    for k in range(30):
        slow.arrive(0, k * 0.008)
    assert slow.max_wait(29 * 0.008) == 0.003  # 125 Hz: half the period (4 ms) is longer than the timeout


def test_a_pause_is_not_taken_for_a_control_period():
    batcher = TickBatcher(1, timeout=0.003)
    for k in range(10):
        batcher.arrive(0, k * 0.002)
    batcher.arrive(0, 10.0)  # a pause of ~10 s
    assert batcher.period[0] == pytest.approx(0.002)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_a_batch_timeout_that_is_not_positive_is_refused(probe, value):
    with pytest.raises(ValueError, match="batch_timeout_ms=.*: must be a finite number > 0 ms"):
        PolicyServerNode(policy=RecordingPolicy(), context=probe.context, parameter_overrides=[
            Parameter("robots", value=ROBOTS), Parameter("batch_timeout_ms", value=value)])
    with pytest.raises(ValueError, match="positive finite"):
        TickBatcher(3, value * 1e-3)
