"""The ROS 2 sub-commands of ``mt-specialize``: ``up``, ``switch``, ``record``, ``rviz-config``.

``add_ros_subcommands(subparsers)`` registers them on an argparse sub-parsers object; each sets
``func`` to a function ``(args) -> int`` (the exit code). rclpy is imported only when a command runs.

All three keep DDS on this machine unless the user chose otherwise: ``ROS_AUTOMATIC_DISCOVERY_RANGE``
defaults to ``LOCALHOST`` (the PyPI wheels ignore ``ROS_LOCALHOST_ONLY``).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

NODES = ("simulator", "policy_server", "learner")


# ---------------------------------------------------------------------------------------------
# argparse
# ---------------------------------------------------------------------------------------------
def add_ros_subcommands(subparsers) -> None:
    """Register ``up``, ``switch``, ``record`` and ``rviz-config`` on an argparse sub-parsers object."""
    from mt_specialize.paths import CONFIG_DIR

    up = subparsers.add_parser(
        "up", help="start the simulator, policy-server and learner nodes and supervise them",
        description="Start the three ROS 2 nodes (python -m mt_specialize.ros.<node> --ros-args "
                    "--params-file CONFIG_DIR/<node>.yaml) and supervise them. Ctrl-C / SIGTERM stops "
                    "them all (the learner writes a checkpoint first) and exits 130 / 143 once every node "
                    "exited 0 (1 if one did not); if a node dies it is reported by name with its exit code, "
                    "the others are stopped, and the exit code is non-zero. Before any node starts, the "
                    "parameter files are checked (profile, mode, command_units, the learner's profile) and a "
                    "--checkpoint whose tasks, robots, observation size, profile or physics engine do not fit "
                    "the configured robots stops the start with the reason (exit 2). In lockstep mode every "
                    "node runs on the simulation clock (use_sim_time). "
                    "The pip-only equivalent of `ros2 launch mt_specialize training.launch.py`.")
    up.add_argument("--config-dir", type=Path, default=CONFIG_DIR,
                    help=f"directory with simulator.yaml, policy_server.yaml, learner.yaml (default {CONFIG_DIR})")
    up.add_argument("--no-learner", action="store_true", help="do not start the learner (serve a checkpoint)")
    up.add_argument("--checkpoint", metavar="PATH", help="checkpoint for the policy server to serve")
    up.add_argument("--mode", choices=("realtime", "lockstep"), help="override the simulator's mode")
    from mt_specialize.profiles import NAMES as PROFILES

    up.add_argument("--profile", choices=list(PROFILES),
                    help="robot physics of the simulator and the learner's runs (default: their config files'); "
                         "a served checkpoint must have been trained on it")
    up.add_argument("--foxglove", nargs="?", const=8765, type=_foxglove_port, metavar="PORT",
                    help="also start the foxglove_view node: a Foxglove WebSocket server on 127.0.0.1:PORT "
                         "(default 8765, 0 = any free port) streaming every robot's scene and joint states "
                         "(needs foxglove-sdk: pip install mt_specialize[foxglove])")
    up.add_argument("--stop-timeout", type=float, default=30.0, metavar="S",
                    help="seconds a node gets to exit after SIGINT before SIGTERM, then SIGKILL 3 s later "
                         "(default 30: the learner finishes its iteration and writes a checkpoint)")
    up.set_defaults(func=cmd_up)

    sw = subparsers.add_parser(
        "switch", help="switch the task that drives a robot (policy-server service call)",
        description="Call /ROBOT/switch_to_TASK (std_srvs/Trigger). A robot the policy server does not serve "
                    "is refused with the list of its robots. If there is no such service, the policy server's "
                    "task.ROBOT parameter is set instead, which refuses unknown tasks with the list of allowed "
                    "ones. Exit 1 on refusal.")
    sw.add_argument("robot", help="robot namespace, e.g. biped")
    sw.add_argument("task", help="task name, e.g. biped_backward")
    sw.add_argument("--server", default="/policy_server", help="policy-server node name (default /policy_server)")
    sw.add_argument("--timeout", type=float, default=5.0, metavar="S", help="discovery timeout (default 5 s)")
    sw.set_defaults(func=cmd_switch)

    rec = subparsers.add_parser(
        "record", help="record joint_states and markers to an MCAP file (Foxglove, ros2 bag play)",
        description="Subscribe to every robot's joint_states and markers (or --topics) and write the "
                    "serialized CDR messages with their ros2msg schemas to an MCAP file.")
    rec.add_argument("out", type=Path, help="output file, e.g. run.mcap")
    rec.add_argument("--duration", type=float, required=True, metavar="S", help="seconds to record")
    rec.add_argument("--topics", nargs="+", metavar="TOPIC",
                     help="topics to record (default: all */joint_states and */markers found)")
    rec.add_argument("--discovery", type=float, default=10.0, metavar="S",
                     help="at most this many seconds to wait for publishers (default 10)")
    rec.set_defaults(func=cmd_record)

    rv = subparsers.add_parser(
        "rviz-config", help="an rviz2 display config showing every robot of a simulator.yaml",
        description="Write the rviz2 display config for the robots of CONFIG_DIR/simulator.yaml (per robot: "
                    "its /<robot>/markers and a RobotModel of /<robot>/robot_description with TF prefix "
                    "<robot>). `ros2 launch mt_specialize training.launch.py rviz:=true` makes the same one.")
    rv.add_argument("--config-dir", type=Path, default=CONFIG_DIR,
                    help=f"directory with simulator.yaml (default {CONFIG_DIR})")
    rv.add_argument("-o", "--out", type=Path, help="output .rviz file (default: standard output)")
    rv.set_defaults(func=cmd_rviz_config)


def _foxglove_port(text: str) -> int:
    from mt_specialize.ros.foxglove_view import check_port

    try:
        return check_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ros_env() -> dict:
    from mt_specialize.ros.common import local_ros_env

    return local_ros_env()


# ---------------------------------------------------------------------------------------------
# up
# ---------------------------------------------------------------------------------------------
def node_command(node: str, config_dir: Path, overrides: dict | None = None) -> list[str]:
    """``python -m mt_specialize.ros.<node> --ros-args --params-file <dir>/<node>.yaml [-p k:=v]...``"""
    cmd = [sys.executable, "-m", f"mt_specialize.ros.{node}", "--ros-args"]
    params = Path(config_dir) / f"{node}.yaml"
    if params.is_file():
        cmd += ["--params-file", str(params)]
    for key, value in (overrides or {}).items():
        cmd += ["-p", f"{key}:={value}"]
    return cmd


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def stop_children(procs: dict[str, subprocess.Popen], timeout: float, log=print) -> None:
    """SIGINT every running child, then SIGTERM after ``timeout``, then SIGKILL after 3 s more."""
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        alive = {n: p for n, p in procs.items() if p.poll() is None}
        if not alive:
            return
        if sig != signal.SIGINT:
            log(f"mt-specialize up: {', '.join(alive)} still running: sending {sig.name}")
        for p in alive.values():
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(p.poll() is None for p in alive.values()):
            time.sleep(0.05)


def cmd_up(args: argparse.Namespace) -> int:
    from mt_specialize.ros.preflight import node_params, startup_problem

    config_dir = Path(args.config_dir)
    if not config_dir.is_dir():
        print(f"mt-specialize up: config directory {config_dir} does not exist", file=sys.stderr)
        return 2
    nodes = [n for n in NODES if not (n == "learner" and args.no_learner)]
    overrides: dict[str, dict] = {n: {} for n in nodes}
    ckpt = None
    if args.checkpoint:
        ckpt = Path(args.checkpoint).expanduser().resolve()
        if not ckpt.is_file():
            print(f"mt-specialize up: checkpoint {ckpt} does not exist", file=sys.stderr)
            return 2
        overrides["policy_server"]["checkpoint"] = str(ckpt)
    problem = startup_problem(config_dir, checkpoint=ckpt, profile=args.profile, mode=args.mode,
                              learner=not args.no_learner)
    if problem is not None:
        print(f"mt-specialize up: not starting: {problem}", file=sys.stderr)
        return 2
    if args.mode:
        overrides["simulator"]["mode"] = args.mode
    if args.profile:
        for node in ("simulator", "learner"):
            if node in overrides:
                overrides[node]["profile"] = args.profile
    if (args.mode or node_params(config_dir, "simulator").get("mode")) == "lockstep":
        for node in nodes:  # the simulation clock (/clock) drives every node, as the launch file does
            overrides[node]["use_sim_time"] = "true"
    if args.foxglove is not None:
        try:
            import foxglove  # noqa: F401
        except ImportError:
            print("mt-specialize up: --foxglove needs the foxglove-sdk package: pip install mt_specialize[foxglove] "
                  "(or pip install foxglove-sdk)", file=sys.stderr)
            return 2
        nodes.append("foxglove_view")
        overrides["foxglove_view"] = {"port": args.foxglove}

    env = _ros_env()
    received: list[int] = []

    def on_signal(signum, frame):
        received.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    procs: dict[str, subprocess.Popen] = {}
    code = 0
    stopping = False
    try:
        for node in nodes:
            # own session: a terminal Ctrl-C reaches only us, and we stop the nodes in order
            procs[node] = subprocess.Popen(node_command(node, config_dir, overrides[node]), env=env,
                                           start_new_session=True)
            print(f"mt-specialize up: started {node} (pid {procs[node].pid})", flush=True)
        print(f"mt-specialize up: ROS_DOMAIN_ID={env.get('ROS_DOMAIN_ID', '0')}, discovery "
              f"{env['ROS_AUTOMATIC_DISCOVERY_RANGE']}; Ctrl-C stops all nodes", flush=True)
        while True:
            if received:
                name = signal.Signals(received[0]).name
                print(f"mt-specialize up: {name} received, stopping {', '.join(procs)}", flush=True)
                code = 128 + received[0]
                stopping = True
                break
            dead = [(n, p.returncode) for n, p in procs.items() if p.poll() is not None]
            if dead:
                for n, rc in dead:
                    print(f"mt-specialize up: node {n} exited ({_describe_exit(rc)}); stopping the others",
                          file=sys.stderr, flush=True)
                rc = dead[0][1]
                code = rc if rc > 0 else 1
                break
            time.sleep(0.1)
    finally:
        running = [n for n, p in procs.items() if p.poll() is None]
        stop_children(procs, args.stop_timeout, log=lambda m: print(m, file=sys.stderr, flush=True))
        for s, h in previous.items():
            signal.signal(s, h)
    failed = [(n, procs[n].returncode) for n in running if procs[n].returncode != 0]
    for n, rc in failed:
        print(f"mt-specialize up: node {n} did not stop cleanly ({_describe_exit(rc)})", file=sys.stderr, flush=True)
    if stopping and failed:
        return 1
    if stopping:
        print("mt-specialize up: all nodes stopped cleanly", flush=True)
    return code


# ---------------------------------------------------------------------------------------------
# rviz-config
# ---------------------------------------------------------------------------------------------
def cmd_rviz_config(args: argparse.Namespace) -> int:
    from mt_specialize.ros.rviz_config import rviz_config_for

    sim = Path(args.config_dir) / "simulator.yaml"
    if not sim.is_file():
        print(f"mt-specialize rviz-config: {sim} does not exist", file=sys.stderr)
        return 2
    try:
        text = rviz_config_for(sim)
    except ValueError as exc:
        print(f"mt-specialize rviz-config: {sim}: {exc}", file=sys.stderr)
        return 2
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------
# switch
# ---------------------------------------------------------------------------------------------
def cmd_switch(args: argparse.Namespace) -> int:
    os.environ.update({k: v for k, v in _ros_env().items() if k not in os.environ})
    import rclpy
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import GetParameters, SetParameters
    from std_srvs.srv import Trigger

    from mt_specialize.ros import topics
    from mt_specialize.ros.common import clean_ns

    robot = clean_ns(args.robot)
    server = "/" + clean_ns(args.server)
    rclpy.init(args=[])
    node = rclpy.create_node(f"mt_specialize_switch_{os.getpid()}")
    try:
        def call(client, request):
            future = client.call_async(request)
            rclpy.spin_until_future_complete(node, future, timeout_sec=args.timeout)
            if not future.done():
                raise TimeoutError(f"no response from {client.srv_name} within {args.timeout} s")
            return future.result()

        getter = node.create_client(GetParameters, f"{server}/get_parameters")
        if not getter.wait_for_service(timeout_sec=args.timeout):
            print(f"no policy server {server} found (ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID', '0')}); "
                  f"is it running?", file=sys.stderr)
            return 1
        robots_value, checkpoint_value = call(getter, GetParameters.Request(names=["robots", "checkpoint"])).values
        robots = [clean_ns(r) for r in robots_value.string_array_value]
        if robot not in robots:
            print(f"no robot {robot!r}; robots: {robots}", file=sys.stderr)
            return 1
        trigger = node.create_client(Trigger, topics.switch_service(robot, args.task))
        if trigger.wait_for_service(timeout_sec=min(args.timeout, 2.0)):
            response = call(trigger, Trigger.Request())
            print(response.message)
            return 0 if response.success else 1
        # no such service: ask the parameter, which says why (a task that is not the robot's)
        params = node.create_client(SetParameters, f"{server}/set_parameters")
        if not params.wait_for_service(timeout_sec=args.timeout):
            print(f"policy server {server} has no set_parameters service", file=sys.stderr)
            return 1
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=args.task)
        result = call(params, SetParameters.Request(
            parameters=[Parameter(name=f"task.{robot}", value=value)])).results[0]
        if not result.successful:
            print(f"refused: {result.reason}", file=sys.stderr)
            return 1
        # the task takes effect with the first checkpoint if none is loaded yet
        if checkpoint_value.string_value:
            print(f"robot {robot} now runs task {args.task}")
        else:
            print(f"robot {robot} will run task {args.task} (no checkpoint loaded yet)")
        return 0
    except TimeoutError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    finally:
        node.destroy_node()
        rclpy.shutdown()


# ---------------------------------------------------------------------------------------------
# record (MCAP, ros2msg schemas, CDR payloads: opens in Foxglove and with `ros2 bag play`)
# ---------------------------------------------------------------------------------------------
_PRIMITIVES = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
               "uint32", "int64", "uint64", "string", "wstring"}


def _msg_file(type_name: str) -> Path:
    """``pkg/msg/Name`` -> path of its .msg file (ament index, else the interpreter's share/)."""
    pkg, _, name = type_name.split("/")
    roots = []
    try:
        from ament_index_python.packages import get_package_share_directory

        roots.append(Path(get_package_share_directory(pkg)))
    except Exception:
        pass
    roots += [Path(p) / "share" / pkg for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    roots.append(Path(sys.prefix) / "share" / pkg)
    for root in roots:
        path = root / "msg" / f"{name}.msg"
        if path.is_file():
            return path
    raise FileNotFoundError(f"cannot find the definition of {type_name} (looked in {[str(r) for r in roots]})")


def _field_types(text: str, pkg: str) -> list[str]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        token = line.split()[0]  # constants ("uint8 ARROW=0") are always primitive types
        base = token.split("[", 1)[0].split("<=", 1)[0]
        if base in _PRIMITIVES:
            continue
        parts = base.split("/")
        out.append(f"{parts[0]}/msg/{parts[-1]}" if len(parts) > 1 else f"{pkg}/msg/{base}")
    return out


def ros2msg_schema(type_name: str) -> str:
    """The complete ``ros2msg`` definition of ``pkg/msg/Name``: its .msg text, then every nested
    type's, each after a line of 80 '=' and ``MSG: pkg/msg/Name`` (rosbag2's encoding)."""
    main = _msg_file(type_name).read_text()
    parts, seen = [main.rstrip("\n")], {type_name}
    queue = _field_types(main, type_name.split("/")[0])
    while queue:
        dep = queue.pop(0)
        if dep in seen:
            continue
        seen.add(dep)
        text = _msg_file(dep).read_text()
        parts.append("=" * 80 + f"\nMSG: {dep}\n" + text.rstrip("\n"))
        queue += _field_types(text, dep.split("/")[0])
    return "\n".join(parts) + "\n"


def message_class(type_name: str):
    """``pkg/msg/Name`` -> the Python message class."""
    import importlib

    pkg, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


def cmd_record(args: argparse.Namespace) -> int:
    os.environ.update({k: v for k, v in _ros_env().items() if k not in os.environ})
    try:
        from mcap.writer import CompressionType, Writer
    except ImportError:
        print("mt-specialize record needs the 'mcap' package: pip install mcap", file=sys.stderr)
        return 2
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from mt_specialize.ros.common import make_executor

    if args.duration <= 0:
        print("--duration must be > 0", file=sys.stderr)
        return 2
    rclpy.init(args=[])
    node = rclpy.create_node(f"mt_specialize_record_{os.getpid()}")
    executor = make_executor()
    executor.add_node(node)
    stop: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: stop.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        def discovered() -> tuple[dict, list]:
            found = dict((n, t[0]) for n, t in node.get_topic_names_and_types() if t)
            if args.topics:
                return found, [t for t in ("/" + t.lstrip("/") for t in args.topics) if t in found]
            return found, sorted(n for n, t in found.items()
                                 if (n.endswith("/joint_states") and t == "sensor_msgs/msg/JointState")
                                 or (n.endswith("/markers") and t == "visualization_msgs/msg/MarkerArray"))

        # Wait until the publishers appear (at most --discovery s), then a short settle so every
        # robot's topics are in.
        end = time.monotonic() + args.discovery
        settle_end = None
        while time.monotonic() < (settle_end or end) and not stop:
            executor.spin_once(timeout_sec=0.05)
            found, wanted = discovered()
            complete = len(wanted) == len(args.topics) if args.topics else bool(wanted)
            if complete and settle_end is None:
                settle_end = min(end, time.monotonic() + 0.5)
        found, wanted = discovered()
        if args.topics:
            missing = [t for t in ("/" + t.lstrip("/") for t in args.topics) if t not in found]
            if missing:
                print(f"no publisher for {missing} (ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID', '0')})",
                      file=sys.stderr)
                return 1
            wanted = ["/" + t.lstrip("/") for t in args.topics]
        else:
            if not wanted:
                print("found no */joint_states or */markers topic to record; is the simulator running "
                      f"(ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID', '0')})?", file=sys.stderr)
                return 1
        args.out.parent.mkdir(parents=True, exist_ok=True)
        counts = {t: 0 for t in wanted}
        with open(args.out, "wb") as stream:
            writer = Writer(stream, compression=CompressionType.ZSTD)
            writer.start(profile="ros2", library="mt_specialize record")
            channels = {}
            for topic in wanted:
                type_name = found[topic]
                schema = writer.register_schema(name=type_name, encoding="ros2msg",
                                                data=ros2msg_schema(type_name).encode())
                channels[topic] = writer.register_channel(topic=topic, message_encoding="cdr", schema_id=schema)
            seq = [0]

            def on_message(data: bytes, topic: str) -> None:
                now = time.time_ns()
                writer.add_message(channel_id=channels[topic], log_time=now, publish_time=now,
                                   data=bytes(data), sequence=seq[0])
                seq[0] += 1
                counts[topic] += 1

            qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            subs = [node.create_subscription(message_class(found[t]), t, lambda d, t=t: on_message(d, t), qos,
                                             raw=True) for t in wanted]
            print(f"recording {', '.join(wanted)} for {args.duration:g} s to {args.out}", flush=True)
            end = time.monotonic() + args.duration
            while time.monotonic() < end and not stop:
                executor.spin_once(timeout_sec=min(0.05, max(0.0, end - time.monotonic())))
            for s in subs:
                node.destroy_subscription(s)
            writer.finish()
        print(f"wrote {sum(counts.values())} messages to {args.out}: "
              + ", ".join(f"{t} {n}" for t, n in counts.items()))
        return 0 if not stop else 128 + stop[0]
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown()
