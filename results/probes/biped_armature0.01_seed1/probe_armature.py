"""Probe: the biped with joint armature 0.01 (Walker2d's) instead of 1.0 on its actuated hinges;
otherwise the first grid's cell biped_fwd_bwd/ours_jt400k_sp25/seed1 (profile none).

    python probe_armature.py OUT_DIR [--resume]
"""
import sys

from mt_specialize.config import TrainConfig
from mt_specialize.train import run_training

resume = len(sys.argv) > 2
config = TrainConfig(experiment="biped_fwd_bwd", method="ours", jt=400_000, sp=0.25, seed=1, profile="none",
                     physics={"armature": 0.01})
print(run_training(config, sys.argv[1], resume=resume))
