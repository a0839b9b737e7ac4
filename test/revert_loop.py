"""A test helper: make the revert rule stop a run (``errors.RevertLoop``) at a chosen iteration."""


def force_revert_loop(trainer, from_iteration: int) -> None:
    """From ``from_iteration`` on, fake episodes of return -1e4 enter the trainer's return buffer before
    each rollout is judged, so every later rollout is rejected until ``revert_max_streak`` stops the run
    (whatever real episodes finish)."""
    accept = trainer.accept_rollout

    def accept_with_drop(rollout):
        if trainer.iteration >= from_iteration:
            trainer.episodes.pooled_returns.extend([-1e4] * 20)
        return accept(rollout)
    trainer.accept_rollout = accept_with_drop
