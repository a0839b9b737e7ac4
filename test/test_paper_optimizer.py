"""The paper's authors' training rules: their optimiser (one Adam per task, tasks in turn, shared
entries in sync), their revert rule, their append, their split count."""
import csv
from pathlib import Path

import pytest
import torch

from mt_specialize.config import TrainConfig
from mt_specialize.learning.multi import BatchedRuns
from mt_specialize.learning.optim import RunAdam
from mt_specialize.learning.policy import SplitGaussianPolicy, SplitValue
from mt_specialize.learning.specialize import select_split_masks
from mt_specialize.train import Interrupted, Trainer

T, OBS, ACT, B = 2, 5, 3, 32
LR, EPS = 3e-3, 1e-5


def _loss_weights(generator):
    """Per round and task: observations, actions and per-sample weights of a policy-gradient loss."""
    return (torch.randn(T, B, OBS, generator=generator), torch.randn(T, B, ACT, generator=generator),
            torch.randn(T, B, generator=generator))


def _entry(net, name):
    return net._entry_tensors(*net._named_entries()[name])


class _Reference:
    """T full single-task networks, one torch Adam each; after each task's step the shared entries'
    values and Adam moments are copied to the other tasks (the authors' ``pposgd_split.py``)."""

    def __init__(self, policy: SplitGaussianPolicy):
        self.nets, self.adams = [], []
        effective = policy.effective_params()
        for i in range(T):
            net = SplitGaussianPolicy(1, OBS, ACT)
            with torch.no_grad():
                for name, value in effective.items():
                    _entry(net, name)[0].copy_(value[i])
            self.nets.append(net)
            params = [_entry(net, n)[0] for n in effective]
            adam = torch.optim.Adam(params, lr=LR, eps=EPS)
            for p in params:  # moments exist from the start (MpiAdam's zeros), so they can be synced
                adam.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p),
                                 "exp_avg_sq": torch.zeros_like(p)}
            self.adams.append(adam)
        self.names = list(effective)

    def step(self, i, obs, act, weight, masks):
        net, adam = self.nets[i], self.adams[i]
        adam.zero_grad()
        loss = -(net.log_prob(obs[None], act[None])[0] * weight).mean()
        loss.backward()
        adam.step()
        with torch.no_grad():
            for name in self.names:
                shared = ~masks[name]
                src = _entry(net, name)[0]
                for j in range(T):
                    if j == i:
                        continue
                    dst = _entry(self.nets[j], name)[0]
                    dst[shared] = src[shared]
                    for key in ("exp_avg", "exp_avg_sq"):
                        self.adams[j].state[dst][key][shared] = adam.state[src][key][shared]

    def effective(self):
        return {n: torch.stack([_entry(net, n)[0].detach() for net in self.nets]) for n in self.names}


def _bound(policy):
    """``policy`` (and a value net beside it, not stepped here) bound to a batch of one, with its Adam."""
    value = SplitValue(T, OBS)
    adam = RunAdam(list(policy.parameters()) + list(value.parameters()), lr=LR, eps=EPS)
    return BatchedRuns([(policy, value, adam)]), adam


def _ours_round(runs, obs, act, weight, steps):
    """One round of the per-task optimiser: task 0, ..., T-1 each stepping on its policy-gradient loss
    (``steps(i)`` after each task's step)."""
    runs.refresh()
    runs.optimizer.prepare([True], per_task=True)
    runs.optimizer.begin_round()
    for i in range(T):
        logp, cache = runs.policy.train_log_prob_task(obs[i][None], act[i][None], i)
        runs.optimizer.step_task(i, runs.policy.train_backward_task(cache, (-weight[i] / B)[None]))
        steps(i)


@pytest.mark.parametrize("split", ["joint", "partial", "full", "joint_then_partial"])
def test_task_alternating_adam_equals_synchronised_per_task_adams(split):
    torch.manual_seed(0)
    policy = SplitGaussianPolicy(T, OBS, ACT)
    runs, adam = _bound(policy)
    gen = torch.Generator().manual_seed(1)
    shapes = {n: m.shape for n, m in policy.split_masks().items()}
    partial = {n: torch.rand(s, generator=gen) < 0.3 for n, s in shapes.items()}
    masks = {"joint": {n: torch.zeros(s, dtype=torch.bool) for n, s in shapes.items()},
             "partial": partial, "full": {n: torch.ones(s, dtype=torch.bool) for n, s in shapes.items()},
             "joint_then_partial": {n: torch.zeros(s, dtype=torch.bool) for n, s in shapes.items()}}[split]
    runs.optimizer.copy_state_to_split(0, policy.set_split_masks(masks))
    reference = _Reference(policy)
    for round_ in range(12):
        if split == "joint_then_partial" and round_ == 6:  # split mid-run: copies inherit values and moments
            masks = partial
            runs.optimizer.copy_state_to_split(0, policy.set_split_masks(masks))
        obs, act, weight = _loss_weights(gen)
        _ours_round(runs, obs, act, weight, lambda i: reference.step(i, obs[i], act[i], weight[i], masks))
    ours, ref = policy.effective_params(), reference.effective()
    moved = sum(float((ours[n] - _Reference(SplitGaussianPolicy(T, OBS, ACT)).effective()[n]).abs().sum())
                for n in ours)
    assert moved > 0
    for name in ours:
        torch.testing.assert_close(ours[name], ref[name], rtol=1e-5, atol=1e-6, msg=name)
    # the tasks really took different paths where split, and the same where shared
    for name, mask in masks.items():
        same = (ours[name][0] == ours[name][1])
        assert bool(same[~mask].all())
        if split != "joint" and bool(mask.any()) and name != "log_std":
            assert not bool(same[mask].all())
    assert adam.param_groups[0]["lr"] == LR and int(next(iter(adam.state.values()))["step"]) == 12  # one per round


@pytest.mark.parametrize("split", ["joint", "partial"])
def test_a_tasks_step_takes_the_gradient_of_the_tasks_own_loss(split):
    """The per-task update's gradient of task i (``train_backward_task`` of the batched networks) is
    the gradient autograd takes of ``task_losses``'s entry for that task, computed on a one-task
    network holding the task's effective values."""
    from mt_specialize.learning.batch import Batch
    from mt_specialize.learning.ppo import clipped_surrogate_with_grad, value_loss_with_grad
    from mt_specialize.learning.ppo_update import task_losses

    torch.manual_seed(0)
    policy, value = SplitGaussianPolicy(T, OBS, ACT), SplitValue(T, OBS)
    gen = torch.Generator().manual_seed(2)
    if split == "partial":
        policy.set_split_masks({n: torch.rand(s, generator=gen) < 0.3 for n, s in policy.param_shapes().items()})
        value.set_split_masks({n: torch.rand(s, generator=gen) < 0.3 for n, s in value.param_shapes().items()})
        with torch.no_grad():
            for p in list(policy.parameters()) + list(value.parameters()):
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    obs, act = torch.randn(T, B, OBS, generator=gen), torch.randn(T, B, ACT, generator=gen)
    with torch.no_grad():
        old = policy.log_prob(obs, act) + 0.3 * torch.randn(T, B, generator=gen)
    batch = Batch(obs, act, old, torch.randn(T, B, generator=gen), torch.randn(T, B, generator=gen))
    effective = [policy.effective_params(), value.effective_params()]
    runs = BatchedRuns([(policy, value, RunAdam(list(policy.parameters()) + list(value.parameters())))])
    for i in range(T):
        own = batch.task(i)
        logp, policy_cache = runs.policy.train_log_prob_task(own.obs[None], own.actions[None], i)
        _, grad_logp = clipped_surrogate_with_grad(logp, own.old_logp[None], own.advantages[None], 0.2)
        values, value_cache = runs.value.train_forward_task(own.obs[None], i)
        _, grad_values = value_loss_with_grad(values, own.returns[None], 0.7)
        grads = (runs.policy.train_backward_task(policy_cache, grad_logp, -0.01)
                 + runs.value.train_backward_task(value_cache, grad_values))
        single = [SplitGaussianPolicy(1, OBS, ACT), SplitValue(1, OBS)]
        for net, values_of in zip(single, effective):
            with torch.no_grad():
                for name, e in values_of.items():
                    _entry(net, name)[0].copy_(e[i])
        one_task = Batch(*(x[i:i + 1] for x in (batch.obs, batch.actions, batch.old_logp, batch.advantages,
                                                 batch.returns)))
        task_losses(single[0], single[1], one_task, 0.2, 0.7, 0.01)[0].backward()
        reference = {name: _entry(net, name)[0].grad for net in single for name in net.param_shapes()}
        assert sorted(e.name for e, _ in grads) == sorted(reference)
        for entry, grad in grads:
            torch.testing.assert_close(grad[0], reference[entry.name], rtol=1e-5, atol=1e-6, msg=entry.name)


def test_split_count_floor_nonzero_is_the_authors_rule():
    score = {"a": torch.tensor([5.0, 0.0, 0.0, 0.0, 0.0]), "b": torch.tensor([3.0, 2.0, 1.0, 0.0, 0.0])}
    # n = 10, sp = 0.59: round -> 6 entries (ties at 0 included); int(5.9) = 5 entries, only nonzero ones
    assert int(sum(m.sum() for m in select_split_masks(score, 0.59).values())) == 6
    masks = select_split_masks(score, 0.59, count="floor_nonzero")
    assert masks["a"].tolist() == [True, False, False, False, False]
    assert masks["b"].tolist() == [True, True, True, False, False]
    with pytest.raises(ValueError, match="floor_nonzero"):
        select_split_masks(score, 0.5, count="ceil")


# -- trainer ------------------------------------------------------------------------------------------
from test_train import tiny_experiment  # noqa: E402,F401  (the fixture: three hoppers, 384 samples per iteration)


def _config(experiment, **kw):
    config = TrainConfig(**{"experiment": experiment, "envs_per_task": 4, "seed": 3, "checkpoint_every": 2,
                            "profile": "none", **kw})
    config.ppo.minibatch_per_task = 64
    config.ppo.epochs = 2
    return config


def _rows(run_dir):
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in ("samples_per_s", "rollout_samples_per_s")}
                for r in csv.DictReader(f)]


def _force_drop_at(trainer, iteration, streak=2):
    """Make the pooled return collapse in the rollout after ``iteration`` rows and recover ``streak``
    rollouts later: fake episodes of return -1e4 enter the return buffer, then leave it again, so the
    number of rejected rollouts does not hang on how many real episodes happen to finish."""
    collect = trainer.collect

    def collect_with_drop():
        rollout = collect()
        if trainer.iteration == iteration:
            trainer.episodes.pooled_returns.extend([-1e4] * 20)
        elif trainer.iteration == iteration + streak:
            real = [r for r in trainer.episodes.pooled_returns if r != -1e4]
            trainer.episodes.pooled_returns.clear()
            trainer.episodes.pooled_returns.extend(real)
        return rollout
    trainer.collect = collect_with_drop


def test_forced_return_drop_reverts_weights_normaliser_and_counted_samples(tiny_experiment, tmp_path):
    trainer = Trainer(_config(tiny_experiment, method="ours", jt=768, sp=0.25, revert_drop_bound=300), tmp_path / "r")
    _force_drop_at(trainer, 3)
    seen = {}

    def watch(row):
        if row.get("reverted") == 1 and "state" not in seen:
            seen["state"] = {f"policy/{k}": v for k, v in trainer.policy.snapshot_values().items()}
            seen["state"].update({f"value/{k}": v for k, v in trainer.value.snapshot_values().items()})
            seen["rms"] = trainer.obs_rms.state_dict()
            seen["accepted"] = trainer.revert.accepted_values
            seen["row"] = dict(row)
    trainer.progress = watch
    trainer.run()
    row = seen["row"]
    assert (row["iteration"], row["samples"], row["samples_real"], row["reverts"]) == (4, 2 * 384, 4 * 384, 1)
    for key, value in seen["state"].items():
        torch.testing.assert_close(value, seen["accepted"][key], rtol=0, atol=0, msg=key)
    for key, value in seen["rms"].items():
        torch.testing.assert_close(value, seen["accepted"][f"obs_rms/{key}"], rtol=0, atol=0)
    rows = _rows(tmp_path / "r")
    reverted = [int(r["reverted"]) for r in rows]
    assert reverted[:4] == [0, 0, 0, 1]
    # the fake episodes stay in the return buffer (not restored, as the authors' rewbuffer), so the
    # rule keeps rejecting until they leave it (after 2 rollouts here); counted samples stay rewound
    assert reverted[:6] == [0, 0, 0, 1, 1, 0]
    assert [int(r["samples"]) for r in rows[:6]] == [384, 768, 1152, 768, 768, 1152]
    assert [int(r["reverts"]) for r in rows[:6]] == [0, 0, 0, 1, 2, 2]
    assert int(rows[-1]["samples"]) >= 3840
    # checkpoints are named by real samples, which never rewind: the newest sorts last
    names = sorted(p.name for p in (tmp_path / "r" / "checkpoints").glob("ckpt_*.safetensors"))
    assert names[-1] == f"ckpt_{int(rows[-1]['samples_real']):012d}.safetensors"
    assert int(rows[-1]["samples_real"]) == 384 * len(rows)  # every rollout counts as real samples


def test_resume_after_a_revert_is_exact(tiny_experiment, tmp_path):
    # a checkpoint at iteration 3 (1152 counted samples), then a revert (768 counted) and a stop at 4:
    # the resume must take the newest checkpoint, not the one with the larger counted sample number
    config = dict(method="ours", jt=768, sp=0.25, revert_drop_bound=300, checkpoint_every=3)
    whole = Trainer(_config(tiny_experiment, **config), tmp_path / "whole")
    _force_drop_at(whole, 3)
    whole.run()
    part = Trainer(_config(tiny_experiment, **config), tmp_path / "part")
    _force_drop_at(part, 3)
    with pytest.raises(Interrupted):
        part.run(should_stop=lambda: part.iteration == 4)
    resumed = Trainer(_config(tiny_experiment, **config), tmp_path / "part", resume=True)
    assert resumed.revert.reverts == 1 and resumed.samples_real == 4 * 384 and resumed.samples == 768
    _force_drop_at(resumed, 3)  # the fake episodes came back with the checkpoint; they leave as before
    resumed.run()
    assert _rows(tmp_path / "whole") == _rows(tmp_path / "part")
    for a, b in zip(whole.policy.state_dict().values(), resumed.policy.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_authors_append_normalises_the_one_hot_to_zero_raw_append_keeps_it(tiny_experiment, tmp_path):
    for mode in ("normalized", "raw"):
        trainer = Trainer(_config(tiny_experiment, method="append", append_mode=mode, samples=768), tmp_path / mode)
        trainer.run()
        x = trainer.policy_input(trainer.obs)  # (T, E, obs_dim + T)
        one_hot = x[..., trainer.obs_dim:]
        if mode == "normalized":
            assert abs(one_hot).max() < 1e-2
            assert trainer.obs_rms.mean.shape[-1] == trainer.obs_dim + 3
        else:
            assert (one_hot == torch.eye(3).numpy()[:, None, :]).all()
            assert trainer.obs_rms.mean.shape[-1] == trainer.obs_dim


def test_per_task_optimizer_takes_t_steps_per_minibatch(tiny_experiment, tmp_path):
    mixed = Trainer(_config(tiny_experiment, method="joint", samples=384), tmp_path / "m")
    mixed.run()
    per_task_config = _config(tiny_experiment, method="joint", samples=384)
    per_task_config.ppo.optimizer = "per_task"
    per_task = Trainer(per_task_config, tmp_path / "p")
    per_task.run()
    step = lambda t: int(next(iter(t.optimizer.state.values()))["step"])  # noqa: E731
    assert step(mixed) == 2 * 2  # 2 epochs x 2 minibatches (128 per task / 64)
    assert step(per_task) == 4  # one bias-correction count per round, the T steps of a round share it
    assert per_task.batched.optimizer.round == [4]


def test_profile_settings_and_bad_values():
    paper = TrainConfig(profile="paper").resolved(3_000_000, 4000)
    assert (paper.ppo.optimizer, paper.revert_drop_bound, paper.append_mode, paper.score_statistic,
            paper.split_count) == ("per_task", 300.0, "normalized", "std", "floor_nonzero")
    mujoco = TrainConfig().resolved(3_000_000, 4000)
    assert (mujoco.profile, mujoco.ppo.optimizer, mujoco.revert_drop_bound) == ("mujoco", "mixed", "off")
    explicit = TrainConfig(profile="paper", revert_drop_bound="off", append_mode="raw").resolved(3_000_000, 4000)
    assert (explicit.revert_drop_bound, explicit.append_mode) == ("off", "raw")
    assert TrainConfig.from_run_config({"method": "joint"}).profile == "none"  # a run from before profiles
    for kw, message in ((dict(profile="dart"), r"profile must be one of \['paper'"), (dict(revert_drop_bound=-1), "revert_drop_bound"),
                        (dict(revert_drop_bound="sometimes"), "revert_drop_bound"),
                        (dict(append_mode="twice"), "append_mode"), (dict(split_count="ceil"), "split_count"),
                        (dict(score_statistic="mad"), "score_statistic")):
        with pytest.raises(ValueError, match=message):
            TrainConfig(**kw).resolved(3_000_000, 4000)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig.from_dict({"ppo": {"optimizer": "sgd"}})


def test_cli_profiles_are_the_configs(capsys):
    from mt_specialize import cli, config

    parser = cli.build_parser()
    assert [parser.parse_args(["train", "--profile", p]).profile for p in config.PROFILES] == list(config.PROFILES)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["train", "--profile", "dart"])
    assert exit_.value.code == 2 and "invalid choice: 'dart'" in capsys.readouterr().err


def test_run_records_its_resolved_physics_and_profile_reaches_the_robots(tiny_experiment, tmp_path):
    import yaml

    trainer = Trainer(_config(tiny_experiment, method="joint", samples=384, profile="paper"), tmp_path / "p")
    saved = yaml.safe_load((tmp_path / "p" / "config.yaml").read_text())
    assert saved["profile"] == "paper" and saved["ppo"]["optimizer"] == "per_task"
    assert saved["task_physics"]["hopper_capsule"]["inertia"] == "dart"
    assert saved["task_physics"]["hopper_capsule"]["armature"] == 0.0
    model = trainer.experiment.tasks[0].build_model()
    assert float(model.dof_armature[3:].max()) == 0.0
    trainer.close()


def test_a_run_from_before_profiles_resumes_as_profile_none(tiny_experiment, tmp_path):
    import yaml

    run = tmp_path / "old"
    trainer = Trainer(_config(tiny_experiment, method="joint", samples=768), run)
    with pytest.raises(Interrupted):
        trainer.run(should_stop=lambda: True)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    for key in ("profile", "revert_drop_bound", "append_mode", "split_count", "task_physics", "physics"):
        saved.pop(key)  # what a config.yaml written before these settings holds
    saved["ppo"].pop("optimizer")
    saved["score_statistic"] = "variance"
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    config = TrainConfig.from_yaml(run / "config.yaml", run_config=True)
    resumed = Trainer(config, run, resume=True)
    assert resumed.config.profile == "none" and resumed.samples == 384
    assert float(resumed.experiment.tasks[0].build_model().dof_armature[3:].min()) == 1.0
    resumed.run()
    with pytest.raises(ValueError, match="profile"):  # the same run with another profile is refused
        Trainer(_config(tiny_experiment, method="joint", samples=768, profile="paper"), run, resume=True)


def test_a_revert_loop_stops_the_run_with_a_reason(tiny_experiment, tmp_path):
    """Fake episodes that never leave the return buffer: every iteration after the drop is rejected.
    After revert_max_streak rejections in a row the run stops with RevertLoop (instead of looping
    for ever); the rows written so far and the checkpoints stay."""
    from mt_specialize.errors import RevertLoop

    trainer = Trainer(_config(tiny_experiment, method="joint", revert_drop_bound=300, revert_max_streak=3,
                              samples=384 * 40), tmp_path / "r")
    _force_drop_at(trainer, 3, streak=10 ** 6)
    with pytest.raises(RevertLoop, match=r"rejected 3 iterations in a row .*\(revert_max_streak 3\)"):
        trainer.run()
    rows = _rows(tmp_path / "r")
    assert [int(r["reverted"]) for r in rows] == [0, 0, 0, 1, 1]  # the third rejection raises
    assert trainer.samples_real == 6 * 384 and trainer.samples == 2 * 384  # rewound to the last accepted rollout
    assert list((tmp_path / "r" / "checkpoints").glob("ckpt_*.safetensors"))
    with pytest.raises(ValueError, match="revert_max_streak must be an integer >= 1, got 0"):
        _config(tiny_experiment, method="joint", revert_max_streak=0).resolved(3840, 384)
