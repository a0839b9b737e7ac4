"""Probe: the biped with joint armature 0.01 (Walker2d's) instead of 1.0; otherwise the grid's cell
biped_fwd_bwd/ours_jt400k_sp25/seed1."""
import sys
import mt_specialize.envs.robots as robots
robots.ARMATURE = 0.01
from mt_specialize.config import TrainConfig
from mt_specialize.train import run_training
resume = len(sys.argv) > 2
print(run_training(TrainConfig(experiment="biped_fwd_bwd", method="ours", jt=400_000, sp=0.25, seed=1), sys.argv[1], resume=resume))
