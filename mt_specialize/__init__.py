"""mt_specialize: multi-task PPO with gradient-guided policy specialization.

Layers (dependencies point down; docs/design.md, checked by test/test_layering.py):
``envs`` (robots, tasks, batched physics) and ``learning`` (split networks, PPO, score) at the
bottom; ``experiments``, ``config``, ``train`` on top of them; the ROS 2 nodes
(``mt_specialize.ros``) are thin shells over that core, and nothing else imports ROS.
"""

__version__ = "0.1.0"
