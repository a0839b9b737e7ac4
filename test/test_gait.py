"""Rendering a policy's gait, with a mid-episode task switch."""
import imageio.v3 as iio
import numpy as np
import pytest

from mt_specialize.envs import planar
from mt_specialize.envs.gait import play, write_animation
from mt_specialize.envs.tasks import TaskSpec
from mt_specialize.learning.inference import InferencePolicy


@pytest.fixture(scope="module")
def policy():
    return InferencePolicy.random_init(["biped_forward", "biped_backward"], obs_dim=17, act_dim=6, seed=2)


def test_switch_changes_the_driving_task_at_the_given_step(policy):
    episode = play(policy, "biped_forward", [(0, "biped_forward"), (5, "biped_backward")], steps=12)
    n = len(episode.task_index)
    assert list(episode.task_index[:5]) == [0] * 5 and set(episode.task_index[5:]) <= {1}
    assert episode.qpos.shape == (n + 1, 9)
    back_first = play(policy, "biped_forward", [(0, "biped_backward"), (4, "biped_forward")], steps=8)
    assert list(back_first.task_index[:4]) == [1] * 4 and set(back_first.task_index[4:]) <= {0}
    with pytest.raises(ValueError, match="must increase"):
        play(policy, "biped_forward", [(0, "biped_forward"), (0, "biped_backward")], steps=3)
    with pytest.raises(ValueError, match="unknown task 'moonwalk'"):
        play(policy, "biped_forward", [(0, "moonwalk")], steps=3)


def test_animation_has_one_frame_per_rendered_pose(policy, tmp_path):
    episode = play(policy, "biped_forward", [(0, "biped_forward")], steps=8)
    path = write_animation("biped_forward", episode.qpos, tmp_path / "g.gif", every=2, width=64, height=48)
    frames = iio.imread(path, index=None)
    assert frames.shape[0] == len(episode.qpos[::2]) and frames.shape[1:3] == (48, 64)
    assert np.ptp(frames) > 0  # not a blank image
    with pytest.raises(ValueError, match=r"\.gif or \.mp4"):
        write_animation("biped_forward", episode.qpos, tmp_path / "g.png")


def test_animation_plays_at_the_tasks_control_period(tmp_path):
    """One frame per ``every`` control steps of the task's own period (timestep x frame_skip)."""
    slow = TaskSpec("slow_hopper", "hopper_capsule", frame_skip=10)  # 0.02 s per control step
    poses = np.tile(slow.build_model().qpos0, (6, 1))
    poses[:, planar.PITCH] = np.linspace(0.0, 1.0, 6)  # distinct frames (a GIF merges repeated ones)
    path = write_animation(slow, poses, tmp_path / "slow.gif", every=2, width=32, height=24)
    assert iio.immeta(path, index=0)["duration"] == pytest.approx(1000 * slow.dt * 2) == 40  # ms per frame


@pytest.mark.parametrize("dt, step, delay_ms", [(0.008, 5, 40), (0.002, 10, 20), (0.02, 1, 20), (0.05, 1, 50),
                                                (0.003, 10, 30)])
def test_gif_frames_last_whole_centiseconds_of_at_least_two(dt, step, delay_ms):
    from mt_specialize.envs.gait import gif_frame_step

    assert gif_frame_step(dt) == step and round(1000 * dt * step) == delay_ms


def test_a_gif_by_default_plays_at_real_time_in_whole_centiseconds(tmp_path):
    from mt_specialize.envs.gait import gif_frame_step

    task = TaskSpec("hopper_capsule", "hopper_capsule")  # 0.008 s per control step: a frame every 5, 40 ms
    poses = np.tile(task.build_model().qpos0, (11, 1))
    poses[:, planar.PITCH] = np.linspace(0.0, 1.0, 11)  # distinct frames
    path = write_animation(task, poses, tmp_path / "g.gif", width=32, height=24)
    step = gif_frame_step(task.dt)
    assert step == 5 and iio.immeta(path, index=0)["duration"] == pytest.approx(1000 * task.dt * step) == 40
    assert len(iio.imread(path, index=None)) == len(range(0, 11, step))
