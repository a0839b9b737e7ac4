"""Split networks and their training parts: policy and value nets with per-task weights, PPO
losses, the gradient-spread score, normalisers, optimisers, checkpoints, inference. Knows no robot."""
