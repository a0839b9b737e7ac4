"""Every node exits 0 on SIGINT (once or twice, any spacing) and on SIGTERM, with no traceback and no
FATAL line; the learner writes a checkpoint of its last iteration first and the next start resumes
from it. The nodes run as real processes (``python -m mt_specialize.ros.<node>``)."""
from __future__ import annotations

import csv
import re
import signal
import time
from pathlib import Path

import pytest
from conftest import TINY_BATCH, tiny_experiment

pytestmark = pytest.mark.timeout(180)

#: Lines that must not appear in a node's log after a stop signal.
UNCLEAN = ("Traceback", "KeyboardInterrupt", "[FATAL]", "fatal", "Segmentation", "terminate called")


def assert_clean_exit(node, code: int) -> None:
    log = node.log()
    assert code == 0, f"{node.name} exited with {code}:\n{log}"
    for text in UNCLEAN:
        assert text not in log, f"{node.name} logged {text!r}:\n{log}"


def metrics_rows(out: Path) -> list[dict]:
    path = out / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def checkpoint_samples(out: Path) -> list[int]:
    """Sample counts of the checkpoints in ``out`` (from their names ``ckpt_<samples>``), sorted."""
    return sorted(int(p.stem.split("_")[1]) for p in (out / "checkpoints").glob("ckpt_*.safetensors"))


def wait_until(predicate, timeout: float, what: str, nodes=()) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        for node in nodes:
            assert node.alive(), f"{node.name} exited early:\n{node.log()}"
        assert time.monotonic() < end, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.1)


def ran_its_first_lines(node) -> bool:
    """Whether the node's process has run its module's first lines (``STOP.install()``, which comes before
    the node imports numpy): numpy's extension is mapped. A signal before that point reaches CPython's
    start-up (the ``site`` import), before any program code, and ends the interpreter with exit code 1."""
    try:
        return "_multiarray_umath" in Path(f"/proc/{node.proc.pid}/maps").read_text()
    except OSError:
        return False


def learner_params(out: Path) -> dict:
    return {"experiment": str(tiny_experiment(out.parent)), "method": "joint", "out_dir": str(out), "resume": True}


def start_all(start_node, checkpoint_factory, out: Path):
    """The three nodes: a simulated biped, a server with a biped checkpoint, a learner training a
    hopper (``TINY_BATCH`` samples per iteration) into ``out``; returned once each is working."""
    ckpt = checkpoint_factory("biped.safetensors", ["biped_forward", "biped_backward"], 17, 6)
    sim = start_node("simulator", {"tasks": ["biped_forward"], "namespaces": ["biped"]})
    server = start_node("policy_server", {"robots": ["biped"], "tasks": ["biped_forward"], "checkpoint": str(ckpt)})
    learner = start_node("learner", learner_params(out))
    nodes = (sim, server, learner)
    wait_until(lambda: "simulating" in sim.log() and "serving robots" in server.log(), 60, "simulator and server",
               nodes)
    wait_until(lambda: len(metrics_rows(out)) >= 1, 90, "a training iteration", nodes)
    return nodes


def send(nodes, sig: int) -> None:
    for node in nodes:
        node.proc.send_signal(sig)


def assert_learner_saved_its_last_iteration(out: Path, samples_at_signal: int, learner) -> int:
    """The newest checkpoint holds the last iteration written to metrics.csv, which is at most one
    iteration past the stop (the one in progress was finished). The stop is where the node acted on
    the signal, with the samples it had been told of, as it logs: up to one spin timeout (0.1 s) after
    the signal was sent, so an iteration may end in between. Returns the last iteration."""
    rows = metrics_rows(out)
    last = rows[-1]
    assert checkpoint_samples(out)[-1] == int(last["samples"]), (checkpoint_samples(out), rows[-1])
    stopping = re.search(r"stopping training: .* \(done: (\d+) samples", learner.log())
    assert stopping, learner.log()
    samples_at_stop = int(stopping.group(1))
    assert samples_at_signal <= int(last["samples"]) and samples_at_stop <= int(last["samples"])
    assert int(last["samples"]) - samples_at_stop <= TINY_BATCH  # at most the iteration in progress
    return int(last["iteration"])


@pytest.mark.parametrize("gap", [0.0, 0.3, 1.0])
def test_two_sigints_every_node_exits_0(start_node, checkpoint_factory, tmp_path, gap):
    out = tmp_path / "run"
    nodes = start_all(start_node, checkpoint_factory, out)
    samples_at_signal = int(metrics_rows(out)[-1]["samples"])
    send(nodes, signal.SIGINT)
    time.sleep(gap)
    send(nodes, signal.SIGINT)
    for node in nodes:
        assert_clean_exit(node, node.proc.wait(60))
    assert_learner_saved_its_last_iteration(out, samples_at_signal, nodes[2])


def test_sigterm_every_node_exits_0_and_the_learner_resumes(start_node, checkpoint_factory, tmp_path):
    out = tmp_path / "run"
    nodes = start_all(start_node, checkpoint_factory, out)
    samples_at_signal = int(metrics_rows(out)[-1]["samples"])
    send(nodes, signal.SIGTERM)
    for node in nodes:
        assert_clean_exit(node, node.proc.wait(60))
    iteration = assert_learner_saved_its_last_iteration(out, samples_at_signal, nodes[2])
    saved = checkpoint_samples(out)[-1]

    # the next start continues from that checkpoint: the following iteration, no row repeated
    learner = start_node("learner", learner_params(out))
    wait_until(lambda: len(metrics_rows(out)) > iteration, 90, "an iteration after the resume", [learner])
    assert f"resuming from ckpt_{saved:012d}.safetensors" in learner.log()
    iterations = [int(r["iteration"]) for r in metrics_rows(out)]
    assert iterations == list(range(1, len(iterations) + 1))
    learner.proc.send_signal(signal.SIGINT)
    assert_clean_exit(learner, learner.proc.wait(60))


def test_two_sigints_while_starting_up(start_node, checkpoint_factory, tmp_path):
    """Signals that arrive while a node still imports its modules or builds itself."""
    ckpt = checkpoint_factory("biped.safetensors", ["biped_forward", "biped_backward"], 17, 6)
    nodes = [start_node("simulator", {"tasks": ["biped_forward"], "namespaces": ["biped"]}),
             start_node("policy_server", {"robots": ["biped"], "tasks": ["biped_forward"], "checkpoint": str(ckpt)}),
             start_node("learner", learner_params(tmp_path / "run"))]
    for node in nodes:  # each has run its first lines: a signal before them hits CPython's own start-up
        wait_until(lambda: ran_its_first_lines(node), 60, f"{node.name} to start its own code", [node])
    send(nodes, signal.SIGINT)
    time.sleep(0.3)
    send(nodes, signal.SIGINT)
    for node in nodes:
        assert_clean_exit(node, node.proc.wait(60))


BLOCKED_TEARDOWN = '''
import sys, threading
from mt_specialize.ros.signals import STOP
STOP.install()
from rclpy.node import Node
from mt_specialize.ros import common

class Stuck(Node):
    def __init__(self):
        super().__init__("stuck")
        self.get_logger().info("spinning")

    def destroy_node(self):
        threading.Event().wait()  # an rclpy teardown step that never returns

sys.exit(common.run_node(Stuck))
'''


def test_a_blocked_rclpy_teardown_cannot_hold_the_process(tmp_path):
    """After the node's own clean-up, a teardown step that blocks (as rclpy's executor / node
    destruction can) ends the process with the node's exit code within TEARDOWN_TIMEOUT, naming the
    step, instead of leaving it to launch's SIGTERM / SIGKILL escalation."""
    import subprocess
    import sys

    from conftest import node_env

    from mt_specialize.ros.common import TEARDOWN_TIMEOUT

    log = tmp_path / "stuck.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", BLOCKED_TEARDOWN], stdout=out, stderr=subprocess.STDOUT,
                                env=node_env(), start_new_session=True)
        try:
            wait_until(lambda: "spinning" in log.read_text(), 60, "the node to spin")
            proc.send_signal(signal.SIGINT)
            start = time.monotonic()
            code = proc.wait(TEARDOWN_TIMEOUT + 30)
        finally:
            proc.kill()
    elapsed = time.monotonic() - start
    text = log.read_text()
    assert code == 0, text
    assert "rclpy teardown blocked in destroy_node" in text, text
    assert TEARDOWN_TIMEOUT - 0.5 <= elapsed < TEARDOWN_TIMEOUT + 20, elapsed
    for bad in UNCLEAN:
        assert bad not in text, text
