"""Learner node as a real process: bad parameters are reported, not fatal; a tiny run publishes
progress and its checkpoint, which a policy server then serves."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
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
    with pytest.raises(ValueError, match="unknown profile 'dart'"):
        make_config({**params, "profile": "dart"})


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
