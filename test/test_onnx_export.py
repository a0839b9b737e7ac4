"""ONNX export of a checkpoint's policy: onnxruntime gives InferencePolicy's actions for every
method (tiny runs), the manifest describes the graph and the robots, bad requests and files are clear
errors, ``mt-specialize export`` writes it and refuses unknown formats."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the onnx extra (pip install .[onnx]) is not installed")
pytest.importorskip("onnxscript", reason="the onnx extra (pip install .[onnx]) is not installed")

from mt_specialize.config import TrainConfig  # noqa: E402
from mt_specialize.learning.inference import InferencePolicy  # noqa: E402
from mt_specialize.learning.onnx_export import OnnxPolicy, export_onnx, read_manifest  # noqa: E402
from mt_specialize.learning.policy_file import PolicyFileError, policy_file_info  # noqa: E402
from mt_specialize.methods import METHODS, get_method  # noqa: E402
from mt_specialize.train import Trainer, latest_checkpoint  # noqa: E402

TASKS = ["hopper_capsule", "hopper_box", "hopper_ellipsoid"]
#: every training method, and append's second way of feeding the task id
VARIANTS = [(name, {}) for name in METHODS] + [("append", {"append_mode": "normalized"})]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """variant -> the newest checkpoint of a tiny run of it (3 hopper tasks, 2 iterations of 384
    samples; the choosing methods split after the first)."""
    tmp = tmp_path_factory.mktemp("onnx_runs")
    (tmp / "exp.yaml").write_text(f"name: trio\nbatch_size: 384\nbudget: 768\ntasks: {TASKS}\n")
    out = {}
    for method, extra in VARIANTS:
        kwargs = dict(jt=384, sp=0.5) if METHODS[method].chooses_split else {}
        config = TrainConfig(experiment=str(tmp / "exp.yaml"), method=method, envs_per_task=2, seed=3,
                             **kwargs, **extra)
        config.ppo.epochs, config.ppo.minibatch_per_task = 1, 64
        run = tmp / f"{method}_{extra.get('append_mode', '')}"
        Trainer(config, run).run()
        out[(method, extra.get("append_mode"))] = latest_checkpoint(run)
    return out


def _observations(policy, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Observations spread well beyond the normaliser's clip, each task several times."""
    rng = np.random.default_rng(7)
    obs = rng.normal(scale=3.0, size=(n, policy.obs_dim))
    return obs, np.arange(n) % len(policy.task_names)


@pytest.mark.parametrize("method,append_mode", [(m, e.get("append_mode")) for m, e in VARIANTS])
def test_onnx_graph_gives_the_served_actions_for_every_method(runs, tmp_path, method, append_mode):
    path = runs[(method, append_mode)]
    policy = InferencePolicy.from_checkpoint(path)
    onnx_path, manifest_path = export_onnx(policy, tmp_path / "policy.onnx")
    served = OnnxPolicy(onnx_path)
    obs, tasks = _observations(policy)
    want = policy.act(obs, tasks)
    got = served.act(obs, tasks)
    assert got.shape == want.shape == (len(obs), policy.act_dim) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert np.abs(got - want).max() < 1e-9  # the same float64 arithmetic, up to summation order
    # one row at a time and all rows at once agree (the batch axis is dynamic)
    np.testing.assert_allclose(served.act(obs[3:4], tasks[3:4]), want[3:4], rtol=0, atol=1e-9)
    split = any(not (w == w[:1]).all() for w, _ in policy.forward_arrays()["layers"])
    assert split == (method in ("gradient_guided", "random", "separate")), "per-task weights where the method splits"
    manifest = json.loads(manifest_path.read_text())
    assert manifest == read_manifest(onnx_path) == served.manifest
    assert manifest["tasks"] == TASKS and manifest["obs_dim"] == 11 and manifest["act_dim"] == 3
    assert manifest["profile"] == "mujoco"
    assert get_method(manifest["config"]["method"]).name == method


def test_shared_layers_are_stored_once_and_split_ones_per_task(runs, tmp_path):
    import onnx

    for method, copies in (("joint", 1), ("separate", len(TASKS))):
        policy = InferencePolicy.from_checkpoint(runs[(method, None)])
        onnx_path, _ = export_onnx(policy, tmp_path / f"{method}.onnx")
        model = onnx.load(str(onnx_path))
        assert [i.name for i in model.graph.input] == ["observation", "task"]
        assert [o.name for o in model.graph.output] == ["action"]
        arrays = policy.forward_arrays()
        weights = sum(w[0].size + b[0].size for w, b in arrays["layers"])  # one task's network
        normaliser = arrays["mean"].size + arrays["std"].size
        stored = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
        assert 0 <= stored - (copies * weights + normaliser) <= 10, (method, stored, weights, normaliser)


def test_layout_and_metadata_go_into_the_manifest(runs, tmp_path):
    policy = InferencePolicy.from_checkpoint(runs[("random", None)])
    layout = {t: {"robot": t, "observation": [f"o{i}" for i in range(11)]} for t in TASKS}
    onnx_path, _ = export_onnx(policy, tmp_path / "p.onnx", layout=layout, metadata={"samples": 768})
    manifest = read_manifest(onnx_path)
    assert manifest["layout"] == layout and manifest["samples"] == 768
    info = policy_file_info(onnx_path)
    assert (info.kind, info.task_names, info.obs_dim, info.act_dim, info.profile) == ("onnx", TASKS, 11, 3, "mujoco")


def test_bad_requests_and_files_are_clear_errors(runs, tmp_path):
    policy = InferencePolicy.from_checkpoint(runs[("joint", None)])
    onnx_path, _ = export_onnx(policy, tmp_path / "p.onnx")
    served = OnnxPolicy(onnx_path)
    with pytest.raises(ValueError, match=r"obs must have shape \(R, 11\)"):
        served.act(np.zeros((2, 10)), np.zeros(2, int))
    with pytest.raises(ValueError, match="out of range"):
        served.act(np.zeros((1, 11)), np.array([3]))
    with pytest.raises(ValueError, match="unknown task 'moonwalk'"):
        served.task_index("moonwalk")
    with pytest.raises(ValueError, match=r"ends in \.onnx"):
        export_onnx(policy, tmp_path / "p.safetensors")
    with pytest.raises(PolicyFileError, match="file not found"):
        OnnxPolicy(tmp_path / "none.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(PolicyFileError, match="junk.onnx.*cannot be loaded"):
        OnnxPolicy(junk)


def test_cli_export_onnx_and_unknown_format(runs, tmp_path, capsys):
    from mt_specialize.cli import main

    source = runs[("gradient_guided", None)]
    out = tmp_path / "deploy" / "ours.onnx"
    assert main(["export", str(source.parent.parent), str(out), "--format", "onnx"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out and out.with_suffix(".json").is_file()
    manifest = read_manifest(out)
    assert manifest["source"] == str(source)
    hopper = manifest["layout"]["hopper_box"]
    assert hopper["robot"] == "hopper_box" and hopper["control_period_s"] == pytest.approx(0.008)
    assert hopper["engine"] == "mujoco"
    assert hopper["observation"][:2] == ["rootz/position", "rooty/position"] and len(hopper["observation"]) == 11
    assert [a["joint"] for a in hopper["actuators"]] == ["thigh_joint", "leg_joint", "foot_joint"]
    assert all(a["gear"] > 0 for a in hopper["actuators"])
    policy = InferencePolicy.from_checkpoint(source)
    obs, tasks = _observations(policy)
    np.testing.assert_allclose(OnnxPolicy(out).act(obs, tasks), policy.act(obs, tasks), rtol=0, atol=1e-9)

    with pytest.raises(SystemExit) as exit_:
        main(["export", str(source), str(tmp_path / "x.pt"), "--format", "torchscript"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert "argument --format: invalid choice: 'torchscript' (choose from 'safetensors', 'onnx')" in err, err
    assert not (tmp_path / "x.pt").exists()
