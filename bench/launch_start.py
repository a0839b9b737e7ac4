"""Time from ``ros2 launch mt_specialize training.launch.py`` to the first ``/biped/joint_states``.

    .venv/bin/python bench/launch_start.py [--checkout NAME=DIR ...] [--repeat N] [--harness DIR]

Each checkout (default: this repository, as ``this``) is built with ``colcon build`` into a
workspace of its own, then launched in turn ``--repeat`` times (``learner:=false``, the default
simulator.yaml: the biped), the checkouts alternating so that a change in the machine's load hits
all of them alike. This process subscribes to ``/biped/joint_states`` before each launch and takes
the time from just before ``ros2 launch`` starts to the first message; then it stops the launch with
SIGINT to its process group (Ctrl-C) and waits for it to end. Also printed: when the launch log shows
the simulator's first line (``[simulator-1]``). Compare two commits by giving both checkouts, e.g. a
``git archive`` of the older one:

    git archive 6d11fd6 | (mkdir -p /tmp/before && tar -x -C /tmp/before)
    .venv/bin/python bench/launch_start.py --checkout before=/tmp/before --checkout after=. --repeat 5

Needs the ros2-harness (``../shared/ros2-harness``, or ``--harness``) installed into this venv. A
benchmark, not a test: the figures depend on the machine and its load (``other%``: CPU used by
other processes during the launches, in % of one core), printed with the ratio to the first checkout.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 80))
os.environ.setdefault("HOME", tempfile.gettempdir())

REPO = Path(__file__).resolve().parents[1]


def find_harness() -> Path | None:
    for parent in REPO.parents:
        if (parent / "shared" / "ros2-harness" / "install.sh").is_file():
            return parent / "shared" / "ros2-harness"
    return None


def build(checkout: Path, harness: Path, env: dict) -> dict:
    """colcon-build ``checkout`` into a new workspace; the environment of a shell that sourced its
    setup.bash and the harness's env.sh."""
    ws = Path(tempfile.mkdtemp(prefix="launch_start_ws_"))
    (ws / "src").mkdir()
    (ws / "src" / "mt_specialize").symlink_to(checkout.resolve(), target_is_directory=True)
    out = subprocess.run(["colcon", "build", "--packages-select", "mt_specialize"], cwd=ws, env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"colcon build of {checkout} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    shell = subprocess.run(["bash", "-c", f'source "{ws}/install/setup.bash" && source "{harness}/env.sh" && env -0'],
                           env=env, capture_output=True, check=True)
    return dict(item.split("=", 1) for item in shell.stdout.decode().split("\0") if "=" in item)


def busy_jiffies() -> int:
    """CPU time (jiffies) used so far by the whole machine, every core (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # all but idle and iowait


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkout", action="append", metavar="NAME=DIR",
                    help="a checkout to launch (repeatable; default this=<this repository>)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--harness", type=Path, help="ros2-harness directory (default ../shared/ros2-harness)")
    ap.add_argument("--timeout", type=float, default=120.0, help="s to wait for the first joint_states")
    args = ap.parse_args()
    checkouts = {}
    for item in args.checkout or [f"this={REPO}"]:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_dir():
            ap.error(f"--checkout {item!r}: give NAME=DIR with an existing directory")
        checkouts[name] = Path(path)
    harness = args.harness or find_harness()
    if harness is None or not (harness / "install.sh").is_file():
        ap.error("no ros2-harness found: give --harness DIR")

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["ROS_LOG_DIR"] = tempfile.mkdtemp(prefix="launch_start_log_")
    envs = {name: build(path, harness, env) for name, path in checkouts.items()}

    import rclpy
    from sensor_msgs.msg import JointState

    from mt_specialize.ros import topics
    from mt_specialize.ros.common import make_executor

    rclpy.init()
    node = rclpy.create_node("launch_start_bench")
    executor = make_executor()
    executor.add_node(node)
    first: list[float] = []
    started = [float("inf")]  # messages of an earlier launch, delivered late, are not counted

    def on_joint_states(msg) -> None:
        now = time.perf_counter()
        if not first and now > started[0]:
            first.append(now)

    node.create_subscription(JointState, "/biped/joint_states", on_joint_states, topics.JOINT_STATES.qos)
    times = {name: [] for name in checkouts}
    sim_line = {name: [] for name in checkouts}
    hz = os.sysconf("SC_CLK_TCK")
    print(f"{'checkout':>10} {'run':>3} {'first joint_states (s)':>22} {'simulator log (s)':>17} {'other%':>6}",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeat):
            for name in checkouts:
                log_path = Path(tmp) / f"{name}_{k}.log"
                started[0] = float("inf")
                end = time.monotonic() + 1.0
                while time.monotonic() < end:  # drain what is left of the previous launch
                    executor.spin_once(timeout_sec=0.05)
                first.clear()
                j0, c0 = busy_jiffies(), time.monotonic()
                own0 = os.times()
                t0 = started[0] = time.perf_counter()
                with open(log_path, "w") as log:
                    proc = subprocess.Popen(["ros2", "launch", "mt_specialize", "training.launch.py", "learner:=false"],
                                            env=envs[name], cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
                    seen_sim = None
                    while not first and time.perf_counter() - t0 < args.timeout and proc.poll() is None:
                        executor.spin_once(timeout_sec=0.01)
                        if seen_sim is None and "[simulator-1]" in log_path.read_text():
                            seen_sim = time.perf_counter() - t0
                    t1 = first[0] - t0 if first else float("nan")
                    jiffies = busy_jiffies() - j0
                    own = sum(os.times()[:2]) - sum(own0[:2])
                    # the launch and its nodes are "ours" too: charged to the launch, not to others
                    tree = launch_tree_jiffies(proc.pid)
                    other = 100 * max(0.0, jiffies / hz - own - tree / hz) / (time.monotonic() - c0)
                    os.killpg(proc.pid, signal.SIGINT)
                    try:
                        proc.wait(60)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait(10)
                times[name].append(t1)
                sim_line[name].append(seen_sim if seen_sim is not None else float("nan"))
                print(f"{name:>10} {k:>3} {t1:>22.2f} {sim_line[name][-1]:>17.2f} {other:>6.0f}", flush=True)
                if not first:
                    print(re.sub(r"^", "    | ", log_path.read_text()[-3000:], flags=re.M), flush=True)
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown()
    base = next(iter(checkouts))
    print("\nmedian (min-max) s to the first /biped/joint_states:")
    for name, values in times.items():
        v = np.array(values)
        ratio = np.nanmedian(v) / np.nanmedian(np.array(times[base]))
        print(f"  {name:>10}: {np.nanmedian(v):.2f} ({np.nanmin(v):.2f}-{np.nanmax(v):.2f}), "
              f"{ratio:.2f} x {base}; simulator's first log line {np.nanmedian(sim_line[name]):.2f} s")
    return 0


def launch_tree_jiffies(root: int) -> int:
    """utime + stime of ``root`` and its descendants alive now (the launch and its nodes)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(d)] = fields
        children.setdefault(int(fields[1]), []).append(int(d))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += int(stats[pid][11]) + int(stats[pid][12])
        todo += children.get(pid, [])
    return total


if __name__ == "__main__":
    raise SystemExit(main())
