"""Probe: the biped tasks (SPEC's reward, termination, observation; the grid's PPO settings) on
Gymnasium's Walker2d-v5 body (walker2d_v5.xml as shipped: its masses and shapes, armature 0.01,
damping 0.1, ankle gear 100, RK4, left-foot friction 1.9) instead of our URDF biped, optionally with
some of our biped's settings put back. The hip range is the same in both bodies.

    python probe_walker2d.py OUT [--body walker2d|ours] [--ankle-gear G] [--integrator euler|rk4]
                                 [--damping D] [--armature A] [--friction F]
                                 [--method separate] [--seed 1] [--samples 3000000] [--resume]

Question: does forward walking fail because of the hip range (then Walker2d's body fails too) or
because of something else in our body, and which setting?

Everything goes through the package's settings: OUT/experiment.yaml holds the biped's two tasks
(``biped_forward``, ``biped_backward``) on robot ``gymnasium:walker2d`` or ``biped``, with the ankle
motors' gear in the tasks' ``gears``; the other flags are run-wide physics settings
(``TrainConfig.physics``: integrator, damping, armature, friction); profile ``none`` keeps every
setting no flag names at the robot's own value (Walker2d's file, or our biped as the package builds it).
"""
import argparse
import json
from pathlib import Path

import yaml

from mt_specialize.config import TrainConfig
from mt_specialize.envs import physics, robots
from mt_specialize.experiments import get_experiment

ROBOTS = {"walker2d": "gymnasium:walker2d", "ours": "biped"}
ANKLE_JOINTS = ("foot_joint", "foot_left_joint")
TASKS = (("biped_forward", 1), ("biped_backward", -1))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--body", choices=sorted(ROBOTS), default="walker2d")
    parser.add_argument("--ankle-gear", type=float, help="gear of both ankle motors (ours 20, Walker2d 100)")
    parser.add_argument("--integrator", choices=physics.INTEGRATORS, help="ours euler, Walker2d rk4")
    parser.add_argument("--damping", type=float, help="damping of the 6 hinges (ours 1.0, Walker2d 0.1)")
    parser.add_argument("--armature", type=float, help="armature of the 6 hinges (ours 1.0, Walker2d 0.01)")
    parser.add_argument("--friction", type=float, help="sliding friction of every geom (ours 0.9, Walker2d 0.7-1.9)")
    parser.add_argument("--method", default="separate")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--samples", type=int, default=3_000_000)
    parser.add_argument("--resume", action="store_true")
    return parser.parse_args(argv)


def ankle_gears(robot: str, gear: float) -> list[float]:
    """The robot's motor gears (N*m per unit action, motor order) with the ankle motors' set to ``gear``."""
    model = robots.build_model(robot)
    joints = [model.joint(model.actuator_trnid[a, 0]).name for a in range(model.nu)]
    return [gear if joint in ANKLE_JOINTS else float(model.actuator_gear[a, 0]) for a, joint in enumerate(joints)]


def experiment_doc(args: argparse.Namespace) -> dict:
    """The experiment YAML (as a mapping): the biped's two tasks on the chosen body."""
    robot = ROBOTS[args.body]
    gears = None if args.ankle_gear is None else ankle_gears(robot, args.ankle_gear)
    tasks = [{"name": name, "robot": robot, "direction": direction, **({} if gears is None else {"gears": list(gears)})}
             for name, direction in TASKS]
    return {"name": f"biped_fwd_bwd_{args.body}", "batch_size": get_experiment("biped_fwd_bwd").batch_size,
            "tasks": tasks}


def train_config(args: argparse.Namespace, experiment_path: Path) -> TrainConfig:
    """The run: the experiment file, profile none, the flags' physics settings run-wide."""
    flags = {"integrator": args.integrator, "damping": args.damping, "armature": args.armature,
             "friction": args.friction}
    kw = dict(jt=400_000, sp=0.25) if args.method in ("ours", "random") else {}
    return TrainConfig(experiment=str(experiment_path), profile="none", method=args.method, seed=args.seed,
                       samples=args.samples, physics={k: v for k, v in flags.items() if v is not None}, **kw)


def main(argv=None) -> None:
    from mt_specialize.train import run_training

    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.json").write_text(json.dumps(vars(args), indent=1))
    experiment_path = out / "experiment.yaml"
    experiment_path.write_text(yaml.safe_dump(experiment_doc(args), sort_keys=False))
    print(run_training(train_config(args, experiment_path), out, resume=args.resume))


if __name__ == "__main__":
    main()
