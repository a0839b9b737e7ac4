"""Learner node as a real process: bad parameters are reported, not fatal; a tiny run publishes
progress and its checkpoint, which a policy server then serves."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters
from std_msgs.msg import Float64MultiArray, String

from mt_specialize.learning.inference import InferencePolicy
from mt_specialize.ros import topics
from mt_specialize.ros.common import array_msg

pytestmark = pytest.mark.timeout(150)


def _values(status) -> dict:
    return {kv.key: kv.value for kv in status.values}


def test_parameters_take_the_papers_names_too_and_two_values_of_one_setting_are_refused():
    from mt_specialize.ros.learner import default_out_dir, make_config

    params = {"experiment": "three_hoppers", "method": "ours", "seed": 2, "samples": "", "jt": "80k", "sp": 0.05,
              "joint_samples": "", "split_fraction": -1.0}
    config, experiment = make_config(params)
    named, _ = make_config({**params, "method": "gradient_guided", "jt": "", "sp": -1.0,
                            "joint_samples": "80k", "split_fraction": 0.05})
    assert config == named and (config.joint_samples, config.split_fraction) == ("80k", 0.05)
    assert default_out_dir(config, experiment) == Path("runs/three_hoppers_ours_seed2")  # as before the names
    with pytest.raises(ValueError, match="parameters: jt is the paper's name of joint_samples, and the two differ"):
        make_config({**params, "joint_samples": "400k"})
    # the robots: the profile parameter (default mujoco, as the simulator's), a bad one refused
    assert config.profile == "mujoco" and make_config({**params, "profile": "paper"})[0].profile == "paper"
    with pytest.raises(ValueError, match=r"profile must be one of \['paper', .*\], got 'dart'"):
        make_config({**params, "profile": "dart"})


def _example(declared) -> str:
    """A value the setting takes other than its default, as text (test/test_settings.py has the same)."""
    if declared.kind == "choice":
        return [c for c in declared.choice_summaries() if c != declared.default][-1]
    if declared.kind in ("integer", "number"):
        return str(declared.high if declared.high is not None else declared.low + 1)
    return {"count": "1M", "path": "runs/elsewhere", "text": "biped_fwd_bwd"}[declared.kind]


def _resolved(config):
    from mt_specialize.experiments import get_experiment

    experiment = get_experiment(config.experiment)
    return config.resolved(experiment.budget, experiment.batch_size)


def test_every_training_setting_is_a_parameter_read_as_the_command_line_reads_it():
    """Each setting's parameter (and its paper's name) makes the config the flag makes; '' and -1 leave a
    setting that may be null at its default; a bad value is refused naming the setting and what it takes."""
    from mt_specialize import cli
    from mt_specialize.config import SETTINGS
    from mt_specialize.ros.learner import PARAMS, TRAINING_SETTINGS, make_config

    assert set(PARAMS) == {*TRAINING_SETTINGS, "jt", "sp", "out_dir", "resume"}
    assert set(TRAINING_SETTINGS) == {name for name, declared in SETTINGS.items() if declared.kind != "mapping"}
    for name, declared in TRAINING_SETTINGS.items():
        value = "true" if declared.kind == "boolean" else _example(declared)
        if declared.kind == "number" and declared.below_high:
            value = str(declared.low)
        flags = [value] if declared.positional else [cli.setting_flag(name), value]
        if declared.kind == "boolean":
            flags, value = [cli.setting_flag(name)], True  # a ROS bool parameter
        from_flag = cli._train_config(cli.build_parser().parse_args(["train", *flags]))
        for key in (name, declared.paper_name) if declared.paper_name else (name,):
            config, _ = make_config({key: value})
            assert getattr(_resolved(config), name) == getattr(_resolved(from_flag), name), (key, value)
        if declared.nullable:
            for unset in ("", -1, -1.0):
                assert getattr(make_config({name: unset})[0], name) is None
    with pytest.raises(ValueError, match=r"task_switch_prob must be a number in \[0, 1\), got 1.5"):
        make_config({"task_switch_prob": 1.5})
    with pytest.raises(ValueError, match=r"split_fraction \(sp\) must be a number in \[0, 1\], got -0.5"):
        make_config({"sp": -0.5})


def test_bad_parameters_then_a_tiny_run(probe, start_node, tmp_path):
    statuses = []
    paths = []
    probe.node.create_subscription(DiagnosticArray, "/learner/progress",
                                   lambda m: statuses.extend(m.status), topics.JOINT_STATES.qos)
    probe.node.create_subscription(String, "/checkpoint", lambda m: paths.append(m.data), topics.CHECKPOINT.qos)
    out = tmp_path / "run"
    learner = start_node("learner", {"experiment": "no_such_experiment", "method": "joint", "seed": 2,
                                     "samples": "4000", "out_dir": str(out)})

    def error_with(text):
        return any(s.level == DiagnosticStatus.ERROR and text in s.message for s in statuses)

    probe.spin_until(lambda: error_with("no_such_experiment"), 30.0, "an ERROR diagnostic naming the experiment")
    assert learner.alive()
    assert "no_such_experiment" in learner.log()

    client = probe.node.create_client(SetParameters, "/learner/set_parameters")
    getter = probe.node.create_client(GetParameters, "/learner/get_parameters")
    assert client.wait_for_service(timeout_sec=10.0) and getter.wait_for_service(timeout_sec=10.0)

    def set_param(name, value):
        v = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        return probe.call(client, SetParameters.Request(parameters=[ParameterMsg(name=name, value=v)])).results[0]

    def get_param(name):
        return probe.call(getter, GetParameters.Request(names=[name])).values[0].string_value

    # a value that brings a new error is refused with it, and the old value stays
    refused = set_param("method", "bogus")
    assert not refused.successful and "unknown method 'bogus'" in refused.reason and "gradient_guided" in refused.reason
    assert get_param("method") == "joint"
    refused = set_param("samples", "1x")
    assert not refused.successful and "1x" in refused.reason, refused.reason
    assert get_param("samples") == "4000"
    # a parameter that does not exist
    unknown = set_param("sampels", "4000")
    assert not unknown.successful and "no parameter 'sampels'; parameters: [" in unknown.reason
    # every training setting is a parameter, described as --help describes its flag (ros2 param describe)
    from mt_specialize.ros.learner import PARAMS, TRAINING_SETTINGS

    describer = probe.node.create_client(DescribeParameters, "/learner/describe_parameters")
    assert describer.wait_for_service(timeout_sec=10.0)
    described = probe.call(describer, DescribeParameters.Request(names=list(PARAMS))).descriptors
    assert [d.name for d in described] == list(PARAMS)
    for d in described:
        if d.name in TRAINING_SETTINGS:
            declared = TRAINING_SETTINGS[d.name]
            assert d.description.startswith(declared.describe()) and d.additional_constraints == declared.allowed()
            assert d.dynamic_typing and not d.read_only
    refused = set_param("task_switch_prob", "2")
    assert not refused.successful and refused.reason == "task_switch_prob must be a number in [0, 1), got '2'"
    assert learner.alive()

    # fix it: the run starts, reports progress and publishes its checkpoint
    statuses.clear()
    assert set_param("experiment", "three_hoppers").successful
    probe.spin_until(lambda: paths, 100.0, "a checkpoint path")
    ckpt = Path(paths[-1])
    assert ckpt.is_file() and ckpt.parent == (out / "checkpoints").resolve()
    probe.spin_until(lambda: any(_values(s).get("iteration") == "1" for s in statuses), 10.0, "progress")
    row = next(_values(s) for s in statuses if _values(s).get("iteration") == "1")
    assert row["phase"] == "joint" and int(row["samples"]) > 0
    assert {"return/hopper_capsule", "return/hopper_box", "return/hopper_ellipsoid"} <= set(row)
    # why this iteration's episodes ended, per task and cause (the metrics row's ended/<task>/<cause>)
    assert {f"ended/{t}/{c}" for t in ("hopper_capsule", "hopper_box", "hopper_ellipsoid")
            for c in ("non_finite", "state_limit", "height", "pitch", "time_limit", "switch")} <= set(row)
    assert all(row[k].isdigit() for k in row if k.startswith("ended/"))
    assert learner.alive()
    # the run directory is logged as an absolute path; while training runs, its settings cannot change
    assert f"training three_hoppers (joint, seed 2) into {out}" in learner.log()
    running = set_param("out_dir", str(tmp_path / "elsewhere"))
    assert not running.successful and f"read when training starts, and training into {out} is running" \
        in running.reason, running.reason

    # the policy server picks the checkpoint up from the (latched) topic and serves it
    start_node("policy_server", {"robots": ["hopper_box"]})
    cmds = []
    pub = probe.node.create_publisher(Float64MultiArray, "/hopper_box/observation", topics.COMMANDS.qos)
    probe.node.create_subscription(Float64MultiArray, "/hopper_box/commands",
                                   lambda m: cmds.append(np.array(m.data)), topics.COMMANDS.qos)
    obs = np.linspace(-1, 1, 11)
    for _ in range(80):
        pub.publish(array_msg(obs))
        probe.spin_for(0.25)
        if cmds:
            break
    policy = InferencePolicy.from_checkpoint(ckpt)
    want = policy.act(obs[None], np.array([policy.task_names.index("hopper_box")]))[0]
    np.testing.assert_allclose(cmds[-1], want, atol=1e-9)
