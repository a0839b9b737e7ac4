"""What DART 6.20 remembers between steps, and what ``dart_engine`` removes (its module docstring).

For each built-in robot on the DART engine (profile ``paper_dart``): a trajectory of random actions
(uniform, times ``--amplitude``; the biped with none, so that it collapses and lies still) stepped in one
world, then each of its steps repeated from the recorded state in a fresh world. With the engine's
memory removal (``DartWorld.memoryless``, the default) the two agree bit for bit; without it the table
shows how many steps differ and by how much (largest |qvel| difference, m/s or rad/s).

Usage: ``python bench/dart_memory.py [--steps 250] [--amplitude 0.3]``.
"""
from __future__ import annotations

import argparse

import numpy as np

from mt_specialize.envs import dart_engine
from mt_specialize.experiments import profiled_task

ROBOTS = (("hopper_capsule", None), ("hopper_box", None), ("hopper_ellipsoid", None), ("biped_forward", 0.0))


def divergence(task, steps: int, amplitude: float, memoryless: bool) -> tuple[int, float]:
    """(steps whose fresh-world repeat differs, largest |qvel| difference) of one trajectory."""
    model = task.build_model()
    actions = amplitude * np.random.default_rng(1).uniform(-1, 1, (steps, model.nu))
    world = dart_engine.DartWorld(dart_engine.description(task), task.frame_skip)
    world.memoryless = memoryless
    states = [(0.0, model.qpos0.copy(), np.zeros(model.nv))]
    for action in actions:
        states.append(world.control_step(*states[-1], action))
    differences = []
    for k, action in enumerate(actions):
        fresh = dart_engine.DartWorld(dart_engine.description(task), task.frame_skip)
        fresh.memoryless = memoryless
        differences.append(np.abs(fresh.control_step(*states[k], action)[2] - states[k + 1][2]).max())
    return int(np.count_nonzero(differences)), float(max(differences))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=250, help="control steps per trajectory (default %(default)s)")
    parser.add_argument("--amplitude", type=float, default=0.3, help="action amplitude of the hoppers (default %(default)s)")
    args = parser.parse_args(argv)
    print(f"{'robot':<18}{'detector':<10}{'memory removed: steps differing, max':<40}{'kept: steps differing, max'}")
    for name, amplitude in ROBOTS:
        task = profiled_task(name, "paper_dart")
        amp = args.amplitude if amplitude is None else amplitude
        removed = divergence(task, args.steps, amp, True)
        kept = divergence(task, args.steps, amp, False)
        print(f"{name:<18}{dart_engine.description(task).detector:<10}{f'{removed[0]} of {args.steps}, {removed[1]:.2g}':<40}"
              f"{kept[0]} of {args.steps}, {kept[1]:.2g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
