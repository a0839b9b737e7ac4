"""Task switches of a biped_fwd_bwd_ankle100 policy: each direction alone for 1000 steps, then a switch
at steps 200/300/400, reset seeds 0-2. Usage: python switch_try.py RUN_DIR"""
import sys, numpy as np
from mt_specialize.learning.inference import InferencePolicy
from mt_specialize.envs.gait import play
from mt_specialize.train import latest_checkpoint
run = sys.argv[1]
p = InferencePolicy.from_checkpoint(latest_checkpoint(run))
F, B = "biped_forward_ankle100", "biped_backward_ankle100"
for first, second in ((F, B), (B, F)):
    for seed in range(3):
        base = play(p, first, [(0, first)], 1000, seed=seed)
        x = base.qpos[:, 0]
        print(f"{first[6:9]} only seed{seed}: steps {len(x)-1} ({base.ended_by}), dx {x[-1]-x[0]:+.2f} m")
        for at in (200, 300, 400):
            ep = play(p, first, [(0, first), (at, second)], 1000, seed=seed)
            x = ep.qpos[:, 0]
            if len(x) <= at:
                continue
            print(f"   switch at {at}: before {x[at]-x[0]:+.2f} m, after {x[-1]-x[at]:+.2f} m over {len(x)-1-at} steps ({ep.ended_by})")
