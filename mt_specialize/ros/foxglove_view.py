"""Foxglove bridge node: the simulated robots, live, in Foxglove without rviz2 (``foxglove-sdk``).

Starts a Foxglove WebSocket server on 127.0.0.1 (parameter ``port``, default 8765; 0 = any free
port; only this machine can connect, use an SSH tunnel to watch from elsewhere) and, for every
robot namespace ``<ns>`` (parameter ``robots``; empty = every ``/<ns>/joint_states`` of type
sensor_msgs/JointState found in the graph, looked for every second), serves two channels:
  ``/<ns>/joint_states``  foxglove.JointStates (name, position rad or m, velocity, effort per joint)
                          from the robot's sensor_msgs/JointState;
  ``/<ns>/scene``         foxglove.SceneUpdate, one entity ``<ns>`` in frame ``world`` with the robot's
                          geoms as cubes, spheres and cylinders (poses and sizes in m) from its
                          visualization_msgs/MarkerArray ``/<ns>/markers``.
Both are protobuf-encoded with their schemas advertised (Foxglove's 3D panel shows the scene; Plot
and Raw Messages the joint states). Messages are converted only while a client subscribes.
"""
from __future__ import annotations

if __name__ == "__main__":  # python -m: take over SIGINT/SIGTERM before the heavy imports (signals.py)
    from mt_specialize.ros.signals import STOP

    STOP.install()

from rclpy.node import Node

from mt_specialize.ros import topics
from mt_specialize.ros.common import ParameterRules, clean_ns, run_node, steady_timer

HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def check_port(port) -> int:
    """``port`` as an int in 0..65535 (0 = any free port); ValueError naming it otherwise."""
    text = str(port).strip()
    if isinstance(port, bool) or not text.isdigit() or int(text) > 65535:
        raise ValueError(f"Foxglove port {port!r}: give an integer in 0..65535 (0 = any free port)")
    return int(text)


def _timestamp(stamp):
    from foxglove.messages import Timestamp

    return Timestamp(sec=int(stamp.sec), nsec=int(stamp.nanosec))


def joint_states(msg):
    """sensor_msgs/JointState -> foxglove.messages.JointStates (one JointState per name; a missing
    velocity or effort entry stays unset)."""
    from foxglove.messages import JointState, JointStates

    def at(values, i):
        return float(values[i]) if i < len(values) else None

    return JointStates(timestamp=_timestamp(msg.header.stamp), joints=[
        JointState(name=name, position=at(msg.position, i), velocity=at(msg.velocity, i), effort=at(msg.effort, i))
        for i, name in enumerate(msg.name)])


def scene_update(markers, entity_id: str):
    """visualization_msgs/MarkerArray -> foxglove.messages.SceneUpdate with one entity ``entity_id``:
    CUBE -> cube, SPHERE -> sphere, CYLINDER -> cylinder (Marker scale and Foxglove size are both
    full extents in m). Other marker types are left out. Frame and time: the first marker's."""
    from foxglove.messages import (
        Color,
        CubePrimitive,
        CylinderPrimitive,
        Pose,
        Quaternion,
        SceneEntity,
        SceneUpdate,
        SpherePrimitive,
        Vector3,
    )
    from visualization_msgs.msg import Marker

    cubes, spheres, cylinders = [], [], []
    for m in markers.markers:
        p, q, s, c = m.pose.position, m.pose.orientation, m.scale, m.color
        common = dict(pose=Pose(position=Vector3(x=p.x, y=p.y, z=p.z), orientation=Quaternion(x=q.x, y=q.y, z=q.z, w=q.w)),
                      size=Vector3(x=s.x, y=s.y, z=s.z), color=Color(r=c.r, g=c.g, b=c.b, a=c.a))
        if m.type == Marker.CUBE:
            cubes.append(CubePrimitive(**common))
        elif m.type == Marker.SPHERE:
            spheres.append(SpherePrimitive(**common))
        elif m.type == Marker.CYLINDER:
            cylinders.append(CylinderPrimitive(bottom_scale=1.0, top_scale=1.0, **common))
    first = markers.markers[0] if markers.markers else None
    entity = SceneEntity(timestamp=_timestamp(first.header.stamp) if first else None,
                         frame_id=first.header.frame_id if first else "world", id=entity_id,
                         cubes=cubes, spheres=spheres, cylinders=cylinders)
    return SceneUpdate(entities=[entity])


class FoxgloveBridgeNode(Node):
    """ROS 2 shell: subscriptions -> the conversions above -> Foxglove channels."""

    def __init__(self, **kwargs):
        super().__init__("foxglove_view", allow_undeclared_parameters=True, **kwargs)  # ParameterRules refuses
        import foxglove
        from foxglove.channels import JointStatesChannel, SceneUpdateChannel
        from sensor_msgs.msg import JointState
        from visualization_msgs.msg import MarkerArray

        self._types = (JointState, MarkerArray, JointStatesChannel, SceneUpdateChannel)
        rules = ParameterRules(self)
        port = check_port(rules.declare("port", DEFAULT_PORT, "WebSocket port on 127.0.0.1 (0 = any free port)",
                                        read_only=True))
        self._wanted = [clean_ns(r) for r in rules.declare_strings(
            "robots", [], "robot namespaces to stream (empty: every */joint_states found, looked for every second)")]
        try:
            self.server = foxglove.start_server(name="mt_specialize", host=HOST, port=port)
        except Exception as exc:
            raise ValueError(f"cannot start the Foxglove WebSocket server on {HOST}:{port}: {exc}") from exc
        self.robots: dict[str, tuple] = {}
        self.get_logger().info(f"Foxglove WebSocket server on ws://{HOST}:{self.server.port} (open it in Foxglove: "
                               f"Open connection -> Foxglove WebSocket)")
        for ns in self._wanted:
            self._add(ns)
        if not self._wanted:
            self._discover()
            self._timer = steady_timer(self, 1.0, self._discover)

    def _discover(self) -> None:
        suffix = "/" + topics.JOINT_STATES.name
        for name, types in self.get_topic_names_and_types():
            if name.endswith(suffix) and topics.JOINT_STATES.type in types:
                ns = clean_ns(name[: -len(suffix)])
                if ns and ns not in self.robots:
                    self._add(ns)

    def _add(self, ns: str) -> None:
        JointState, MarkerArray, JointStatesChannel, SceneUpdateChannel = self._types
        js_channel = JointStatesChannel(topics.JOINT_STATES.absolute(ns))
        scene_channel = SceneUpdateChannel(f"/{ns}/scene")

        def on_joints(msg):
            if js_channel.has_sinks():
                js_channel.log(joint_states(msg))

        def on_markers(msg):
            if scene_channel.has_sinks():
                scene_channel.log(scene_update(msg, ns))

        subs = (self.create_subscription(JointState, topics.JOINT_STATES.absolute(ns), on_joints,
                                         topics.JOINT_STATES.qos),
                self.create_subscription(MarkerArray, topics.MARKERS.absolute(ns), on_markers, topics.MARKERS.qos))
        self.robots[ns] = (js_channel, scene_channel, subs)
        self.get_logger().info(f"streaming robot {ns}: {topics.JOINT_STATES.absolute(ns)} (foxglove.JointStates), "
                               f"/{ns}/scene (foxglove.SceneUpdate)")

    def close(self) -> None:
        self.server.stop()


def main(args=None) -> int:
    return run_node(FoxgloveBridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
