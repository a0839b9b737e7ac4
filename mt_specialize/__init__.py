"""mt_specialize: multi-task PPO with gradient-guided policy specialization.

Layering (dependencies point down; nothing here imports ROS):
robots -> tasks/experiments -> vec_env (batched rollouts) -> policy/ppo/specialize -> train -> cli.
ROS 2 nodes live in ``mt_specialize.nodes`` and are thin shells over this core.
"""

__version__ = "0.1.0"
