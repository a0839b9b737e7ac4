"""Probe: the biped tasks (SPEC's reward, termination, observation; the grid's PPO settings) on
Gymnasium's Walker2d-v5 body (walker2d_v5.xml as shipped: its masses and shapes, armature 0.01,
damping 0.1, ankle gear 100, RK4, left-foot friction 1.9) instead of our URDF biped, optionally with
some of our biped's settings put back. The hip range is the same in both bodies.

    python probe_walker2d.py OUT [--body walker2d|ours] [--ankle-gear G] [--integrator euler|rk4]
                                 [--damping D] [--armature A] [--friction F]
                                 [--method separate] [--seed 1] [--samples 3000000] [--resume]

Question: does forward walking fail because of the hip range (then Walker2d's body fails too) or
because of something else in our body, and which setting?
"""
import argparse
import json
import os
from pathlib import Path

import gymnasium
import mujoco

import mt_specialize.envs.robots as robots

WALKER2D_XML = os.path.join(os.path.dirname(gymnasium.__file__), "envs/mujoco/assets/walker2d_v5.xml")
INTEGRATORS = {"euler": mujoco.mjtIntegrator.mjINT_EULER, "rk4": mujoco.mjtIntegrator.mjINT_RK4}

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--body", choices=["walker2d", "ours"], default="walker2d")
parser.add_argument("--ankle-gear", type=float, help="gear of both ankle motors (ours 20, Walker2d 100)")
parser.add_argument("--integrator", choices=sorted(INTEGRATORS), help="ours euler, Walker2d rk4")
parser.add_argument("--damping", type=float, help="damping of the 6 hinges (ours 1.0, Walker2d 0.1)")
parser.add_argument("--armature", type=float, help="armature of the 6 hinges (ours 1.0, Walker2d 0.01)")
parser.add_argument("--friction", type=float, help="sliding friction of every geom (ours 0.9, Walker2d 0.7-1.9)")
parser.add_argument("--method", default="separate")
parser.add_argument("--seed", type=int, default=1)
parser.add_argument("--samples", type=int, default=3_000_000)
parser.add_argument("--resume", action="store_true")
args = parser.parse_args()

_build_model = robots.build_model


def build_model(robot, **kw):
    """The biped (Walker2d-v5's model or ours), then the requested settings on the compiled model."""
    if robot != "biped":
        return _build_model(robot, **kw)
    model = mujoco.MjModel.from_xml_path(WALKER2D_XML) if args.body == "walker2d" else _build_model(robot, **kw)
    if args.ankle_gear is not None:
        model.actuator_gear[[2, 5], 0] = args.ankle_gear  # actuators: thigh, leg, foot, thigh_l, leg_l, foot_l
    if args.integrator:
        model.opt.integrator = INTEGRATORS[args.integrator]
    if args.damping is not None:
        model.dof_damping[3:] = args.damping
    if args.armature is not None:
        model.dof_armature[3:] = args.armature
    if args.friction is not None:
        model.geom_friction[:, 0] = args.friction
    return model


robots.build_model = build_model

from mt_specialize.config import TrainConfig  # noqa: E402
from mt_specialize.train import run_training  # noqa: E402

Path(args.out).mkdir(parents=True, exist_ok=True)
(Path(args.out) / "probe.json").write_text(json.dumps(vars(args), indent=1))
kw = dict(jt=400_000, sp=0.25) if args.method in ("ours", "random") else {}
print(run_training(TrainConfig(experiment="biped_fwd_bwd", method=args.method, seed=args.seed,
                                samples=args.samples, **kw), args.out,
                   resume=args.resume))
