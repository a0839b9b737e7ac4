"""Observation -> command round trip through the policy server, next to a bare rclpy echo.

    .venv/bin/python bench/serve_latency.py [--seconds 5] [--rates 125 500] [--robots 1 3] [--repeat N]
                                            [--fifo PRIORITY]

This process plays the simulator: every control tick it publishes one observation per robot on
``/r<i>/observation`` and times the matching ``/r<i>/commands`` (p50 / p99 / max, microseconds).
The round trip runs from just before ``publish`` to the start of the command's callback here (so
it includes this process's own dispatch, the same for every answerer; the EventsExecutor of rclpy
9.1 fails on callbacks taking a MessageInfo, so the DDS arrival time is not available). ``late``
counts answers later than the period, plus unanswered observations. ``other%`` is the CPU used by
processes other than this one and the answerer during the row, in % of one core (the machine's busy
time from /proc/stat minus these two processes'; clamped at 0 against the rounding of the tick
counts): a row with foreign load is not an idle-machine figure, rerun it.
The answering process is, in turn:
  * ``echo``      a bare rclpy node (EventsExecutor) that republishes each observation as the command;
  * ``batched``   the policy server, ``rate_mode: batched`` (one act() for all robots of a tick);
  * ``immediate`` the policy server, ``rate_mode: immediate`` (one act() per observation);
  * ``batched_onnx``, ``immediate_onnx``: the same, serving the checkpoint's ONNX export
    (``mt-specialize export --format onnx``; onnxruntime instead of NumPy; needs the onnx extra).
All on loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) in a domain of their own. A benchmark, not
a test: the figures depend on the machine and its load, and are printed with the ratios to echo.

``--repeat N`` times each row N times against the same answerer (each after a pause of about a
second while the next row's messages are prepared, as the first one). ``--fifo P`` runs this process
and the answerer (every thread) with real-time priority ``SCHED_FIFO`` P while they warm up and time
(needs root or CAP_SYS_NICE): other processes on the machine can then no longer delay them, the
virtual machine's own CPU stalls still can; a controlled comparison on a shared machine, not the
figure a user sees.

Fair to both answerers: the echo freezes its start-up heap like the policy server
(``common.freeze_heap``, run by ``run_node``), and this process freezes its heap and turns the
cyclic GC off while it publishes and times (its pauses are the instrument's, not the answerer's).
"""
from __future__ import annotations

import argparse
import gc
import os
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

OBS_DIM, ACT_DIM = 11, 3
TASKS = ["hopper_capsule", "hopper_box", "hopper_ellipsoid"]

ECHO = r"""
import sys, rclpy
from std_msgs.msg import Float64MultiArray
from rclpy.experimental import EventsExecutor
from mt_specialize.ros import topics
from mt_specialize.ros.common import freeze_heap
rclpy.init()
node = rclpy.create_node("echo")
pubs, subs = [], []
for i in range(int(sys.argv[1])):
    pub = node.create_publisher(Float64MultiArray, f"r{i}/commands", topics.COMMANDS.qos)
    subs.append(node.create_subscription(Float64MultiArray, f"r{i}/observation",
                                         lambda m, pub=pub: pub.publish(m), topics.COMMANDS.qos))
    pubs.append(pub)
ex = EventsExecutor(); ex.add_node(node)
freeze_heap()  # as run_node does for the policy server
try:
    while rclpy.ok():
        ex.spin_once(timeout_sec=0.1)
except BaseException:
    pass
"""


def make_checkpoint(path: Path) -> Path:
    import torch

    from mt_specialize.learning.checkpoint import save_checkpoint
    from mt_specialize.learning.normalize import RunningMeanStd
    from mt_specialize.learning.policy import SplitGaussianPolicy

    torch.manual_seed(0)
    policy = SplitGaussianPolicy(len(TASKS), OBS_DIM, ACT_DIM)
    rms = RunningMeanStd(len(TASKS), (OBS_DIM,))
    tensors = {f"policy/{k}": v.detach().clone() for k, v in policy.state_dict().items()}
    tensors.update({f"obs_rms/{k}": v.detach().clone() for k, v in rms.state_dict().items()})
    save_checkpoint(path, tensors, {"task_names": TASKS, "obs_dim": OBS_DIM, "act_dim": ACT_DIM,
                                    "policy_in": OBS_DIM, "experiment": "bench"})
    return path


def start_answerer(kind: str, n_robots: int, tmp: Path, ckpt: Path) -> subprocess.Popen:
    if kind == "echo":
        cmd = [sys.executable, "-c", ECHO, str(n_robots)]
    else:
        import yaml

        rate_mode, _, onnx = kind.partition("_")
        if onnx:  # the same policy exported to ONNX, served by onnxruntime
            from mt_specialize.learning.inference import InferencePolicy
            from mt_specialize.learning.onnx_export import export_onnx

            if not (tmp / "bench.onnx").is_file():
                export_onnx(InferencePolicy.from_checkpoint(ckpt), tmp / "bench.onnx")
            ckpt = tmp / "bench.onnx"
        params = tmp / f"server_{kind}.yaml"
        params.write_text(yaml.safe_dump({"policy_server": {"ros__parameters": {
            "checkpoint": str(ckpt), "robots": [f"r{i}" for i in range(n_robots)],
            "tasks": TASKS[:n_robots], "rate_mode": rate_mode}}}))
        cmd = [sys.executable, "-m", "mt_specialize.ros.policy_server", "--ros-args", "--params-file", str(params),
               "--log-level", "warn"]
    return subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Driver:
    """Publishes observations at a fixed rate and times the commands.

    Every tick's observation differs (its first entry moves), and the command each one should get
    is known in advance (identity for the echo, the checkpoint's policy for the server), so every
    command is matched to the observation it answers even when answers come late or are lost."""

    def __init__(self, n_robots: int, kind: str, policy, tag: str):
        import rclpy
        from std_msgs.msg import Float64MultiArray

        from mt_specialize.ros import topics
        from mt_specialize.ros.common import make_executor

        self.n = n_robots
        self.kind, self.policy = kind, policy
        self.node = rclpy.create_node(f"bench_driver_{tag}")
        self.executor = make_executor()
        self.executor.add_node(self.node)
        self.pubs = [self.node.create_publisher(Float64MultiArray, f"r{i}/observation", topics.COMMANDS.qos)
                     for i in range(n_robots)]
        self.subs = [self.node.create_subscription(Float64MultiArray, f"r{i}/commands",
                                                   lambda m, i=i: self._on_command(i, m), topics.COMMANDS.qos)
                     for i in range(n_robots)]
        self.base = np.random.default_rng(0).normal(size=(n_robots, OBS_DIM))
        # per robot: (time.perf_counter_ns() at publish, expected command) of the unanswered ones
        self.waiting: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(n_robots)]
        self.lat: list[int] = []  # ns

    def _obs(self, i: int, k: int) -> np.ndarray:
        o = self.base[i].copy()
        o[0] += 1e-3 * (k % 2000)
        return o

    def _expected(self, i: int, obs: np.ndarray) -> np.ndarray:
        if self.kind == "echo":
            return obs
        return self.policy.act(obs[None], np.array([i]))[0]

    def _on_command(self, i: int, msg) -> None:
        now = time.perf_counter_ns()
        cands = self.waiting[i]
        if not cands:
            return
        cmd = np.asarray(msg.data)
        dist = [np.abs(cmd - want).max() if want.shape == cmd.shape else np.inf for _, want in cands]
        j = int(np.argmin(dist))
        if dist[j] < 1e-9:
            self.lat.append(now - cands[j][0])
            del cands[:j + 1]  # older ones will not be answered any more

    def wait_ready(self, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)
            if all(p.get_subscription_count() for p in self.pubs) and all(s.get_publisher_count() for s in self.subs):
                answered, total = self.run(50.0, 0.5)
                if answered == total:
                    return
        raise RuntimeError("the answering node did not come up")

    def run(self, rate: float, seconds: float) -> tuple[int, int]:
        """Publish for ``seconds`` at ``rate``; latencies (ns) of the answered ones in ``self.lat``."""
        from mt_specialize.ros.common import array_msg

        period = 1.0 / rate
        ticks = int(seconds * rate)
        obs = [[self._obs(i, k) for k in range(ticks)] for i in range(self.n)]
        want = [[self._expected(i, o) for o in obs[i]] for i in range(self.n)]
        msgs = [[array_msg(o) for o in obs[i]] for i in range(self.n)]
        self.lat = []
        self.waiting = [[] for _ in range(self.n)]
        gc.collect()
        gc.disable()  # the driver's own GC pauses would be charged to the answerer
        try:
            t0 = time.perf_counter()
            for k in range(ticks):
                for i in range(self.n):
                    self.waiting[i].append((time.perf_counter_ns(), want[i][k]))
                    del self.waiting[i][:-50]
                    self.pubs[i].publish(msgs[i][k])
                deadline = t0 + (k + 1) * period
                while (remaining := deadline - time.perf_counter()) > 0:
                    if not any(self.waiting):
                        time.sleep(remaining)  # all answered: idle until the next tick
                        break
                    self.executor.spin_once(timeout_sec=remaining)
            end = time.perf_counter() + 0.2  # late answers still count (their latency shows it)
            while any(self.waiting) and time.perf_counter() < end:
                self.executor.spin_once(timeout_sec=0.01)
        finally:
            gc.enable()
        return len(self.lat), ticks * self.n


def set_fifo(pids: list[int], priority: int) -> None:
    """Every thread of ``pids`` on ``SCHED_FIFO`` ``priority``; 0 puts them back on ``SCHED_OTHER``."""
    policy, param = (os.SCHED_FIFO, os.sched_param(priority)) if priority else (os.SCHED_OTHER, os.sched_param(0))
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                os.sched_setscheduler(int(tid), policy, param)
            except ProcessLookupError:
                pass  # thread gone meanwhile


def busy_jiffies() -> int:
    """CPU time (jiffies) the whole machine has used so far, every core (/proc/stat: all but idle
    and iowait). Monotonic: it also counts processes that end meanwhile."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]


def process_jiffies(pids) -> int:
    """utime + stime (all threads) of ``pids`` so far."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return total


def foreign_jiffies(own: set[int]) -> int:
    """CPU time (jiffies) used so far by every process not in ``own``: the machine's busy time minus
    theirs. (Summing /proc/<pid>/stat over the other processes instead loses the time of those that
    end during a row, which gave negative figures.)"""
    return busy_jiffies() - process_jiffies(own)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per configuration")
    ap.add_argument("--rates", type=float, nargs="+", default=[125.0, 500.0])
    ap.add_argument("--robots", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--kinds", nargs="+", default=["echo", "batched", "immediate"],
                    choices=["echo", "batched", "immediate", "batched_onnx", "immediate_onnx"])
    ap.add_argument("--repeat", type=int, default=1, help="measured runs per row (same answerer)")
    ap.add_argument("--fifo", type=int, default=0, metavar="PRIORITY",
                    help="SCHED_FIFO priority (1-99) of this process and the answerer while timing; 0: off")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error(f"--repeat {args.repeat}: must be at least 1")
    if not 0 <= args.fifo <= 99:
        ap.error(f"--fifo {args.fifo}: must be a SCHED_FIFO priority 1-99, or 0 for off")

    import rclpy

    rclpy.init()
    tmp = Path(tempfile.mkdtemp(prefix="serve_latency_"))
    ckpt = make_checkpoint(tmp / "bench.safetensors")
    from mt_specialize.learning.inference import InferencePolicy

    policy = InferencePolicy.from_checkpoint(ckpt)
    from mt_specialize.ros.common import freeze_heap

    freeze_heap()  # torch & co.: ~180 000 objects a full collection would walk (50-280 ms)
    hz = os.sysconf("SC_CLK_TCK")
    rows = []
    print(f"# ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}, {args.seconds:g} s per row, {os.cpu_count()} cores; us")
    print(f"{'answerer':>14} {'robots':>6} {'rate Hz':>7} {'answered':>11} {'p50':>6} {'p99':>6} {'max':>6} "
          f"{'late':>5} {'other%':>6}")
    try:
        for kind in args.kinds:
            for n in args.robots:
                proc = start_answerer(kind, n, tmp, ckpt)
                driver = Driver(n, kind, policy, f"{kind}_{n}")
                try:
                    driver.wait_ready()
                    for rate in args.rates:
                        own = {os.getpid(), proc.pid}
                        if args.fifo:
                            set_fifo(sorted(own), args.fifo)
                        try:
                            driver.run(rate, 1.0)  # warm-up
                            for _ in range(args.repeat):
                                j0, t0 = foreign_jiffies(own), time.monotonic()
                                answered, expected = driver.run(rate, args.seconds)
                                other = max(0.0, 100 * (foreign_jiffies(own) - j0) / (hz * (time.monotonic() - t0)))
                                lat = np.array(driver.lat, dtype=np.float64) / 1e3
                                late = int((lat > 1e6 / rate).sum()) + expected - answered
                                p50, p99, mx = (np.percentile(lat, 50), np.percentile(lat, 99), lat.max()) \
                                    if lat.size else (float("nan"),) * 3
                                rows.append((kind, n, rate, p50, p99, mx))
                                print(f"{kind:>14} {n:>6} {rate:>7.0f} {answered:>5}/{expected:<5} {p50:>6.0f} "
                                      f"{p99:>6.0f} {mx:>6.0f} {late:>5} {other:>6.0f}", flush=True)
                        finally:
                            if args.fifo:
                                set_fifo(sorted(own), 0)
                finally:
                    driver.node.destroy_node()
                    proc.send_signal(signal.SIGINT)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
    finally:
        rclpy.shutdown()
    p50s: dict[tuple, list[float]] = {}
    for k, n, r, p50, _, _ in rows:
        p50s.setdefault((k, n, r), []).append(p50)
    median = {key: float(np.median(v)) for key, v in p50s.items()}
    if any(k == "echo" for k, _, _ in median):
        print("\np50 against the bare echo (same robots, same rate; medians over --repeat runs):")
        for (k, n, r), p50 in median.items():
            if k != "echo" and ("echo", n, r) in median:
                ref = median[("echo", n, r)]
                print(f"  {k:>9} robots={n} {r:>4.0f} Hz: {p50 - ref:+5.0f} us ({p50 / ref:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
