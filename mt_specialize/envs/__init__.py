"""The robots and their tasks: URDF -> MuJoCo models, physics settings, rewards and terminations,
Gymnasium and batched multi-task envs, rendering. Imports nothing of learning, training or ROS."""
