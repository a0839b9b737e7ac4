"""Headless rendering of tasks (PNG snapshots, frames for GIFs).

Uses MuJoCo's offscreen renderer with ``MUJOCO_GL=egl`` unless MUJOCO_GL is already set (it must be
set before MuJoCo creates a GL context, so this module sets it on import). The camera tracks the
torso from the robot's right side (looking along +y); shadows and reflections are off for speed.
"""
from __future__ import annotations

import os
import sys

_GL_WAS_SET = "MUJOCO_GL" in os.environ
_MUJOCO_WAS_IMPORTED = "mujoco" in sys.modules
os.environ.setdefault("MUJOCO_GL", "egl")

from pathlib import Path  # noqa: E402

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

if not _GL_WAS_SET and _MUJOCO_WAS_IMPORTED:
    # mujoco chose its GL backend (GLFW, needs a display) at import, before MUJOCO_GL was set:
    # switch its renderer to EGL, which is what MUJOCO_GL=egl selects.
    from mujoco.rendering.classic import gl_context as _gl_context

    try:
        from mujoco.egl import GLContext as _EGLContext

        _gl_context.GLContext = _EGLContext
    except ImportError:  # pragma: no cover - no EGL: keep mujoco's choice
        pass

IMAGE_SIZE_RANGE = (16, 4096)  # pixels: the smallest and largest image width and height rendered
CAMERA_DISTANCE = 3.0  # m
CAMERA_ELEVATION = -5.0  # deg
CAMERA_AZIMUTH = 90.0  # deg: looking along +y, x to the right


def check_image_size(width: int, height: int) -> None:
    """ValueError unless width and height (pixels) are whole numbers in ``IMAGE_SIZE_RANGE``."""
    low, high = IMAGE_SIZE_RANGE
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"image {name} must be a whole number of pixels from {low} to {high}, got {value!r}")


def make_renderer(model: mujoco.MjModel, width: int = 480, height: int = 480) -> mujoco.Renderer:
    """An offscreen renderer (width x height pixels, ``check_image_size``) with shadows and reflections off."""
    check_image_size(width, height)
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
    model.vis.global_.offheight = max(model.vis.global_.offheight, height)
    renderer = mujoco.Renderer(model, height=height, width=width)
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    return renderer


def tracking_camera(model: mujoco.MjModel, body: str | int = 1) -> mujoco.MjvCamera:
    """A camera tracking ``body`` (default the first body after the world: the torso) from the side."""
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_TRACKING
    camera.trackbodyid = model.body(body).id
    camera.distance, camera.elevation, camera.azimuth = CAMERA_DISTANCE, CAMERA_ELEVATION, CAMERA_AZIMUTH
    return camera


def render_data(renderer: mujoco.Renderer, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
    """(H, W, 3) uint8 image of ``data`` (kinematics must be current) from the tracking camera."""
    renderer.update_scene(data, camera=tracking_camera(model))
    return renderer.render().copy()


def render_frames(task, qpos_sequence, width: int = 480, height: int = 480) -> list[np.ndarray]:
    """(H, W, 3) uint8 frames of ``task`` (a TaskSpec: ``tasks.get_task(name)``) posed at each qpos (S, nq)."""
    if isinstance(task, str):
        raise TypeError(f"render_frames takes a TaskSpec, e.g. tasks.get_task({task!r}), not a task name")
    model = task.build_model()
    data = mujoco.MjData(model)
    qpos_sequence = np.asarray(qpos_sequence, dtype=np.float64).reshape(-1, model.nq)
    renderer = make_renderer(model, width, height)
    try:
        frames = []
        for qpos in qpos_sequence:
            data.qpos[:] = qpos
            mujoco.mj_forward(model, data)  # tracking camera needs subtree_com
            frames.append(render_data(renderer, model, data))
        return frames
    finally:
        renderer.close()


def render_task_png(task, path, width: int = 480, height: int = 480, seed: int = 0) -> Path:
    """Render ``task`` (a TaskSpec) at a reset state drawn with ``seed`` to a PNG at ``path``; returns the path."""
    import imageio.v3 as iio

    model = task.build_model()
    qpos, _ = task.sample_reset(model, np.random.default_rng(seed), 1)
    frame = render_frames(task, qpos, width, height)[0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, frame)
    return path
