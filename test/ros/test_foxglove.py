"""``mt-specialize up --foxglove``: the robots' scene and joint states on a Foxglove WebSocket server,
read by a WebSocket client on loopback that speaks the server's protocol (subprotocol
``foxglove.sdk.v1``) and decodes each message from the protobuf schema the server advertises,
as the Foxglove app does."""
from __future__ import annotations

import asyncio
import json
import re
import signal
import struct
import time

import numpy as np
import pytest
from test_cli import CLI, _config_dir, up  # noqa: F401  (the `up` fixture)

pytest.importorskip("foxglove")
websockets = pytest.importorskip("websockets")
pytest.importorskip("google.protobuf")

pytestmark = pytest.mark.timeout(180)

SUBPROTOCOL = "foxglove.sdk.v1"


def message_class(schema_name: str, descriptor_set: bytes):
    """The protobuf message class of ``schema_name`` from a serialized FileDescriptorSet."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(schema_name))


def decode(obj):
    """A foxglove.messages object -> its protobuf message, decoded from the SDK's own schema."""
    schema = type(obj).get_schema()
    return message_class(schema.name, schema.data).FromString(obj.encode())


# ---------------------------------------------------------------------------------------------
# conversions
# ---------------------------------------------------------------------------------------------
def test_joint_states_conversion():
    from sensor_msgs.msg import JointState

    from mt_specialize.ros.foxglove_view import joint_states

    msg = JointState(name=["rootx", "rootz", "knee"], position=[0.5, 1.25, -0.3], velocity=[1.0, 0.0, 2.0])
    msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 345
    out = decode(joint_states(msg))
    assert (out.timestamp.seconds, out.timestamp.nanos) == (12, 345)
    assert [j.name for j in out.joints] == ["rootx", "rootz", "knee"]
    assert [j.position for j in out.joints] == [0.5, 1.25, -0.3]
    assert [j.velocity for j in out.joints] == [1.0, 0.0, 2.0]
    assert not any(j.HasField("effort") for j in out.joints)  # no effort given: unset, not 0


def test_scene_update_from_markers_keeps_poses_sizes_and_colours():
    from visualization_msgs.msg import Marker, MarkerArray

    from mt_specialize.ros.foxglove_view import scene_update

    def marker(mtype, x, scale):
        m = Marker(type=mtype)
        m.header.frame_id = "world"
        m.pose.position.x, m.pose.orientation.w = x, 1.0
        m.scale.x, m.scale.y, m.scale.z = scale
        m.color.r, m.color.a = 0.5, 1.0
        return m

    markers = MarkerArray(markers=[marker(Marker.CUBE, 1.0, (0.1, 0.2, 0.3)), marker(Marker.SPHERE, 2.0, (0.4,) * 3),
                                   marker(Marker.CYLINDER, 3.0, (0.1, 0.1, 0.9)), marker(Marker.ARROW, 4.0, (1, 1, 1))])
    out = decode(scene_update(markers, "hb"))
    (entity,) = out.entities
    assert entity.id == "hb" and entity.frame_id == "world"
    assert [(c.pose.position.x, c.size.z) for c in entity.cubes] == [(1.0, pytest.approx(0.3))]
    assert [(s.pose.position.x, s.size.x) for s in entity.spheres] == [(2.0, pytest.approx(0.4))]
    (cyl,) = entity.cylinders
    assert (cyl.pose.position.x, cyl.size.z, cyl.bottom_scale, cyl.top_scale) == (3.0, pytest.approx(0.9), 1, 1)
    assert cyl.color.r == pytest.approx(0.5) and cyl.pose.orientation.w == 1.0
    assert not entity.arrows  # types without a primitive here are left out


def test_port_must_be_in_range():
    from mt_specialize.ros.foxglove_view import check_port

    assert check_port("0") == 0 and check_port(8765) == 8765
    for bad in ("70000", "-1", "http", True):
        with pytest.raises(ValueError, match=r"give an integer in 0\.\.65535"):
            check_port(bad)


def test_up_refuses_a_bad_foxglove_port(tmp_path):
    import subprocess

    out = subprocess.run(CLI + ["up", "--config-dir", str(_config_dir(tmp_path)), "--foxglove", "70000"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Foxglove port '70000': give an integer in 0..65535" in out.stderr, out.stderr


# ---------------------------------------------------------------------------------------------
# the live server under `mt-specialize up`
# ---------------------------------------------------------------------------------------------
async def _read(port: int, want: dict[str, str], timeout: float = 60.0) -> tuple[dict, dict]:
    """Connect, wait until every topic of ``want`` (topic -> schema name) is advertised, subscribe
    to them, return (advertised channels by topic, first decoded message by topic)."""
    async with websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=[SUBPROTOCOL],
                                  open_timeout=20) as ws:
        assert ws.subprotocol == SUBPROTOCOL
        channels: dict[str, dict] = {}
        end = time.monotonic() + timeout
        while not set(want) <= set(channels):
            message = await asyncio.wait_for(ws.recv(), max(0.1, end - time.monotonic()))
            if isinstance(message, str) and json.loads(message)["op"] == "advertise":
                channels.update({c["topic"]: c for c in json.loads(message)["channels"]})
        subscriptions = {i: topic for i, topic in enumerate(want, start=1)}
        await ws.send(json.dumps({"op": "subscribe", "subscriptions": [
            {"id": i, "channelId": channels[topic]["id"]} for i, topic in subscriptions.items()]}))
        decoded: dict[str, object] = {}
        while set(decoded) != set(want):
            message = await asyncio.wait_for(ws.recv(), max(0.1, end - time.monotonic()))
            if isinstance(message, bytes) and message[0] == 1:  # opcode 1: message data
                sub_id, _log_time = struct.unpack_from("<IQ", message, 1)
                topic = subscriptions[sub_id]
                channel = channels[topic]
                assert (channel["encoding"], channel["schemaEncoding"], channel["schemaName"]) == \
                       ("protobuf", "protobuf", want[topic])
                import base64

                cls = message_class(channel["schemaName"], base64.b64decode(channel["schema"]))
                decoded.setdefault(topic, cls.FromString(message[13:]))
        return channels, decoded


def _listening_addresses(port: int) -> set[str]:
    """Local IPv4/IPv6 addresses with a TCP socket listening on ``port`` (from /proc/net)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                found.add(address)
    return found


def test_up_foxglove_streams_every_robots_joint_states_and_scene(up, tmp_path):  # noqa: F811
    from mt_specialize.envs.tasks import get_task
    from mt_specialize.ros.simulator import RobotSim

    config = _config_dir(tmp_path, sim={"tasks": ["biped_forward", "hopper_box"], "namespaces": ["biped", "hb"],
                                        "robot_spacing": 2.0})
    u = up("--config-dir", str(config), "--no-learner", "--foxglove", "0")
    u.wait_for("[simulator]: simulating")
    u.wait_for("streaming robot hb")
    port = int(re.search(r"Foxglove WebSocket server on ws://127\.0\.0\.1:(\d+)", u.log()).group(1))
    assert _listening_addresses(port) == {"0100007F"}, "the server must listen on 127.0.0.1 only"

    want = {"/hb/joint_states": "foxglove.JointStates", "/biped/joint_states": "foxglove.JointStates",
            "/hb/scene": "foxglove.SceneUpdate", "/biped/scene": "foxglove.SceneUpdate"}
    channels, got = asyncio.run(_read(port, want))

    for ns, task in (("hb", "hopper_box"), ("biped", "biped_forward")):
        robot = RobotSim(get_task(task), np.random.default_rng(0))
        joints = got[f"/{ns}/joint_states"].joints
        assert [j.name for j in joints] == robot.joint_names  # rootx, rootz, rooty, then the hinges
        rootz = joints[robot.joint_names.index("rootz")].position
        assert 0.3 < rootz < 2.0, f"{ns}: torso height {rootz} m"  # the robot stands or falls, above ground
        assert all(np.isfinite([j.position, j.velocity, j.effort]).all() for j in joints)
        (entity,) = got[f"/{ns}/scene"].entities
        assert entity.id == ns and entity.frame_id == "world"
        primitives = list(entity.cubes) + list(entity.spheres) + list(entity.cylinders)
        assert len(primitives) >= len(robot.visuals)  # every geom drawn (a capsule as 3 primitives)
        offset = 2.0 if ns == "hb" else 0.0  # robot_spacing: side by side along y
        assert all(abs(p.pose.position.y - offset) < 0.5 for p in primitives)
    # the box hopper is made of boxes: cubes whose sizes are its geoms' full extents
    hb = RobotSim(get_task("hopper_box"), np.random.default_rng(0))
    sizes = sorted(tuple(np.round(2 * v.size[:3], 4)) for v in hb.visuals)
    cubes = got["/hb/scene"].entities[0].cubes
    assert sorted(tuple(np.round([c.size.x, c.size.y, c.size.z], 4)) for c in cubes) == sizes

    u.proc.send_signal(signal.SIGINT)
    assert u.proc.wait(60) == 130, u.log()
    assert "all nodes stopped cleanly" in u.log() and "[foxglove_view]: SIGINT received" in u.log()
    assert not _listening_addresses(port)
