"""Attack the package as a reliability engineer would, and count how it answers.

Each case runs ``mt-specialize`` (``python -m mt_specialize.cli``) on tiny runs (three hoppers, 384
samples per iteration) with bad values, bad files, damaged or foreign checkpoints, kills, signals,
full and read-only disks or a diverging learning rate, in a fresh directory, and sorts the answer:

    clear      refused with a one-line message naming what is wrong (exit 2; exit 1 for a run that
               stops for good), no traceback, under 5,000 characters, nothing left that blocks a start
    holds      a case that should succeed did, and what it promises held (a resume equal to the
               uninterrupted run, a damaged or foreign checkpoint skipped and named, ...)
    traceback  a Python traceback on stderr
    silent     accepted what should have been refused (exit 0, or still running at the time limit)
    data loss  files lost or silently wrong (a metrics row twice, another run's state adopted, ...)
    unclear    refused, but the message lacks the file or value, is megabytes long, or the refusal
               left debris that blocks the next start
    skipped    the case needs what this process may not do (mount a tmpfs: root)

Usage, from the repository root (about 15 minutes on 2 loaded cores)::

    .venv/bin/python bench/fault_cases.py                  # the code of this checkout
    .venv/bin/python bench/fault_cases.py --code DIR       # another checkout's mt_specialize (PYTHONPATH)
    .venv/bin/python bench/fault_cases.py --only divergence --json out.json

``--code`` measures an earlier version: ``git archive COMMIT | tar -x -C /tmp/old`` then
``--code /tmp/old``. Cases needing a tmpfs (full and read-only disks) mount one when run as root and
are skipped otherwise.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CATEGORIES = ("clear", "holds", "traceback", "silent", "data loss", "unclear", "skipped")
TINY = "name: tiny\nbatch_size: 384\nbudget: 3840\ntasks: [hopper_capsule, hopper_box, hopper_ellipsoid]\n"
SETTINGS = "checkpoint_every: 3\nkeep_checkpoints: 100\nppo: {minibatch_per_task: 64, epochs: 2}\n"
JOINT = ["--method", "joint", "--seed", "3", "--envs-per-task", "4"]
MESSAGE_LIMIT = 5000  # characters on stderr
TIMING_COLUMNS = {"samples_per_s", "rollout_samples_per_s"}


@dataclass
class Proc:
    rc: int | None  # None: killed at the time limit
    out: str
    err: str


@dataclass
class Work:
    """One case's fresh directory, the code under test, and helpers."""

    dir: Path
    code: Path | None
    cache: Path
    notes: list = field(default_factory=list)

    def env(self) -> dict:
        env = dict(os.environ, MUJOCO_GL="egl", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
        if self.code is not None:
            env["PYTHONPATH"] = str(self.code)
        return env

    def start(self, args: list, stderr=subprocess.PIPE) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "mt_specialize.cli", *map(str, args)], cwd=self.dir,
                                env=self.env(), stdout=subprocess.PIPE, stderr=stderr, text=True,
                                errors="replace")

    def cli(self, args: list, timeout: float = 240) -> Proc:
        """``mt-specialize ARGS``; killed (rc None) after ``timeout`` s."""
        proc = self.start(args)
        try:
            out, err = proc.communicate(timeout=timeout)
            return Proc(proc.returncode, out, err)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return Proc(None, out, err)

    def python(self, code: str, timeout: float = 120) -> Proc:
        proc = subprocess.run([sys.executable, "-c", code], cwd=self.dir, env=self.env(), capture_output=True,
                              text=True, timeout=timeout, errors="replace")
        return Proc(proc.returncode, proc.stdout, proc.stderr)

    def file(self, name: str, text: str | bytes) -> Path:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    @property
    def tiny(self) -> Path:
        return self.file("tiny.yaml", TINY)

    @property
    def settings(self) -> Path:
        return self.file("settings.yaml", SETTINGS)

    def train(self, out, *more, settings: Path | None = None) -> list:
        return ["train", self.tiny, *JOINT, "--config", settings or self.settings, "--out", out, *more]

    def trained(self, name: str = "run", samples: int = 1152, seed: int = 3) -> Path:
        """A copy of a finished tiny run (checkpoints at iteration 3, 6, ...), trained once per session."""
        cached = self.cache / f"trained_{samples}_{seed}"
        if not cached.exists():
            work = Work(self.cache / f"make_{samples}_{seed}", self.code, self.cache)
            work.dir.mkdir()
            proc = work.cli(work.train(cached, "--samples", samples, "--seed", seed))
            if proc.rc != 0:
                raise RuntimeError(f"could not train the cached run: {proc.err[-2000:]}")
        shutil.copytree(cached, self.dir / name)
        return self.dir / name

    def mount(self, name: str, size: str, *options: str) -> Path | None:
        """A tmpfs at DIR/name (unmounted after the case), or None where this process may not mount."""
        path = self.dir / name
        path.mkdir()
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs",
                             str(path)], capture_output=True).returncode == 0
        if ok:
            self.notes.append(path)
        return path if ok else None

    def unmount_all(self) -> None:
        for path in self.notes:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


# -- sorting the answers -------------------------------------------------------------------------------

def refusal(proc: Proc, *needles: str, rc: int = 2) -> tuple[str, str]:
    """A case that must be refused: clear only with exit ``rc``, no traceback, a short message naming
    every needle."""
    err = proc.err
    if "Traceback (most recent call last)" in err:
        return "traceback", _last_line(err)
    if proc.rc is None:
        return "silent", "still running at the time limit"
    if proc.rc == 0:
        return "silent", "exit 0"
    if len(err) > MESSAGE_LIMIT:
        return "unclear", f"a {len(err):,}-character message"
    missing = [n for n in needles if n.lower() not in err.lower()]
    if missing or proc.rc != rc:
        return "unclear", f"exit {proc.rc}, message lacks {missing}: {_last_line(err)}"
    return "clear", _last_line(err)


def _last_line(text: str) -> str:
    """The line of ``text`` that says what went wrong: the CLI's 'error:' line, else the last one."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    return (errors or lines or [""])[-1][:200]


def metrics_rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(f)]


def duplicated_iterations(run: Path) -> list[str]:
    seen, twice = set(), []
    for row in metrics_rows(run):
        if row["iteration"] in seen:
            twice.append(row["iteration"])
        seen.add(row["iteration"])
    return twice


def compare_to_reference(w: Work, run: Path, samples: int, seed: int = 3) -> tuple[str, str]:
    """holds if run's metrics equal an uninterrupted run's; data loss on duplicated or differing rows."""
    twice = duplicated_iterations(run)
    if twice:
        return "data loss", f"metrics.csv holds iterations {sorted(set(twice), key=int)} twice"
    reference = w.trained("reference", samples=samples, seed=seed)
    if metrics_rows(run) != metrics_rows(reference):
        return "data loss", "metrics differ from the uninterrupted run's"
    return "holds", "equal to the uninterrupted run"


def ckpt_paths(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("ckpt_*.safetensors"))


def wait_for(predicate: Callable[[], bool], timeout: float = 120) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def rows_written(run: Path) -> int:
    try:
        return max(0, len((run / "metrics.csv").read_text().splitlines()) - 1)
    except (FileNotFoundError, UnicodeDecodeError):
        return 0


# -- the cases -----------------------------------------------------------------------------------------

CASES: list[tuple[str, str, Callable[[Work], tuple[str, str]]]] = []


def case(group: str, name: str):
    def register(fn):
        CASES.append((group, name, fn))
        return fn
    return register


def refuse_flags(group: str, name: str, flags: list, *needles: str, base: bool = True, timeout: float = 240):
    """A case: ``train tiny.yaml --method joint ... FLAGS`` must be refused naming ``needles``; it must
    leave no run directory."""
    def run(w: Work) -> tuple[str, str]:
        args = (w.train("run") if base else ["train", w.tiny, "--config", w.settings, "--out", "run"]) + flags
        category, detail = refusal(w.cli(args, timeout=timeout), *needles)
        if category == "clear" and (w.dir / "run" / "config.yaml").exists():
            return "unclear", "refused but left run/config.yaml behind: " + detail
        return category, detail
    CASES.append((group, name, run))


def refuse_config(group: str, name: str, text: str | bytes, *needles: str, experiment: bool = False,
                  extra: dict | None = None):
    """A case: a --config (or experiment) file with ``text`` must be refused naming ``needles``."""
    def run(w: Work) -> tuple[str, str]:
        for file_name, content in (extra or {}).items():
            w.file(file_name, content)
        path = w.file("bad.yaml", text)
        args = ["train", path if experiment else w.tiny, *JOINT, "--config", w.settings if experiment else path,
                "--samples", "768", "--out", "run"]
        return refusal(w.cli(args), *needles)
    CASES.append((group, name, run))


# command-line values
refuse_flags("cli", "--samples abc", ["--samples", "abc"], "samples", "abc")
refuse_flags("cli", "--samples -5", ["--samples", "-5"], "samples")
refuse_flags("cli", "--samples 0", ["--samples", "0"], "samples")
refuse_flags("cli", "--jt beyond the budget", ["--method", "ours", "--jt", "10M", "--samples", "3840"], "jt")
refuse_flags("cli", "--sp 1.5", ["--method", "ours", "--sp", "1.5", "--jt", "768", "--samples", "3840"], "sp")
refuse_flags("cli", "--method magic", ["--method", "magic"], "magic")
refuse_flags("cli", "--seed -1", ["--seed", "-1", "--samples", "768"], "seed")
refuse_flags("cli", "--seed 99999999999999999999", ["--seed", "99999999999999999999", "--samples", "768"], "seed")
refuse_flags("cli", "--envs-per-task 0", ["--envs-per-task", "0", "--samples", "768"], "envs_per_task")
refuse_flags("cli", "--envs-per-task 20000 --samples 24k", ["--envs-per-task", "20000", "--samples", "24k"],
             "envs_per_task", timeout=60)
refuse_flags("cli", "--samples below one iteration", ["--samples", "100"], "samples", "iteration")
refuse_flags("cli", "--seeds 1-100000", ["--seeds", "1-100000", "--samples", "768"], "seeds", base=False, timeout=20)
refuse_flags("cli", "--seeds 5-1", ["--seeds", "5-1"], "seeds", base=False)
refuse_flags("cli", "--seeds abc", ["--seeds", "abc"], "seeds", base=False)
refuse_flags("cli", "--seed with --seeds", ["--seeds", "1-2"], "--seed")
refuse_flags("cli", "--groups without --seeds", ["--groups", "2", "--samples", "768"], "--groups")
refuse_flags("cli", "--groups 0", ["--seeds", "1-2", "--groups", "0"], "--groups", base=False)
refuse_flags("cli", "--profile bogus", ["--profile", "bogus"], "profile")


@case("cli", "unknown experiment")
def _(w):
    return refusal(w.cli(["train", "four_hoppers", "--out", "run"]), "four_hoppers")


@case("cli", "--start-from a missing path")
def _(w):
    return refusal(w.cli(w.train("run", "--samples", "768", "--start-from", "missing")), "missing")


@case("cli", "--start-from an exported policy")
def _(w):
    run = w.trained()
    exported = w.cli(["export", run, "policy.safetensors"])
    if exported.rc != 0:
        return "skipped", "export failed"
    return refusal(w.cli(w.train("run2", "--samples", "3840", "--start-from", "policy.safetensors")), "serving")


@case("cli", "--resume of a directory holding no run")
def _(w):
    category, detail = refusal(w.cli(w.train("nothing", "--resume", "--samples", "768")), "no run")
    if category == "clear" and (w.dir / "nothing").exists():
        return "unclear", "refused, but left an empty directory: " + detail
    return category, detail


@case("cli", "a second start of an existing run without --resume")
def _(w):
    run = w.trained()
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    category, detail = refusal(w.cli(w.train(run, "--samples", "1152")), "--resume")
    if before != {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}:
        return "data loss", "the existing run's files changed"
    return category, detail


@case("cli", "--resume with another seed")
def _(w):
    run = w.trained()
    return refusal(w.cli(["train", "--out", run, "--resume", "--seed", "4"]), "seed")


@case("cli", "a second trainer on a busy run directory")
def _(w):
    first = w.start(w.train("run", "--samples", "384000"), stderr=subprocess.DEVNULL)
    try:
        if not wait_for(lambda: rows_written(w.dir / "run") >= 1):
            return "skipped", "the first trainer did not start"
        return refusal(w.cli(["train", "--out", "run", "--resume"]), "another process")
    finally:
        first.kill()
        first.wait()


# --config files
refuse_config("config", "unknown key", "learning_rate: 0.1\n", "learning_rate", "bad.yaml")
refuse_config("config", "unknown ppo key", "ppo: {clip_range: 0.3}\n", "clip_range")
refuse_config("config", "malformed YAML", "ppo: {lr: [\n", "bad.yaml")
refuse_config("config", "not UTF-8", "seed: 3  # caf\xe9\n".encode("latin-1"), "bad.yaml", "UTF-8")
refuse_config("config", "a key given twice", "envs_per_task: 4\nseed: 1\nseed: 2\n", "seed", "twice")
refuse_config("config", "a key that is a number", "1: 2\nfoo: 3\n", "foo")
refuse_config("config", "a ppo key that is a number", "ppo: {1: 2, foo: 3}\n", "foo")
refuse_config("config", "a physics key that is a number", "physics: {1: 2, foo: 3}\n", "foo")
_LAUGHS = "&l0 [" + ", ".join(["1.0"] * 10) + "]"
for _level in range(1, 6):  # 10^6 values (the issue's 8 levels: 10^8)
    _LAUGHS = f"&l{_level} [{_LAUGHS}" + f", *l{_level - 1}" * 9 + "]"
refuse_config("config", "a billion laughs in physics.foot_friction", f"physics:\n  foot_friction: {_LAUGHS}\n",
              "bad.yaml")
refuse_config("config", "ppo.lr not a number", "ppo: {lr: abc}\n", "lr")
refuse_config("config", "a list, not a mapping", "- seed\n- 3\n", "mapping")
refuse_config("config", "physics.armature -1", "physics: {armature: -1}\n", "armature")
refuse_config("config", "an unknown physics setting", "physics: {stickiness: 1}\n", "stickiness")
refuse_config("config", "revert_drop_bound -1", "revert_drop_bound: -1\n", "revert_drop_bound")
refuse_config("config", "task_switch_prob 2", "task_switch_prob: 2\n", "task_switch_prob")
refuse_config("config", "checkpoint_every 0", "checkpoint_every: 0\n", "checkpoint_every")
refuse_config("config", "keep_checkpoints 0", "keep_checkpoints: 0\n", "keep_checkpoints")
refuse_config("config", "batch_size not whole", "batch_size: 3.3\n", "batch_size")
refuse_config("config", "score_window 2.5", "score_window: 2.5\n", "score_window")


@case("config", "a --config file that does not exist")
def _(w):
    return refusal(w.cli(["train", w.tiny, "--config", "missing.yaml", "--out", "run"]), "missing.yaml")


# experiment files
_TASKS = "tasks: [hopper_capsule, hopper_box]\n"
refuse_config("experiment", "no batch_size", "name: x\n" + _TASKS, "batch_size", experiment=True)
refuse_config("experiment", "an unknown task", "batch_size: 384\ntasks: [hopper_cube]\n", "hopper_cube",
              experiment=True)
refuse_config("experiment", "a task twice", "batch_size: 384\ntasks: [hopper_box, hopper_box]\n", "unique",
              experiment=True)
refuse_config("experiment", "a key given twice", "batch_size: 384\nbatch_size: 10\n" + _TASKS, "batch_size",
              "twice", experiment=True)
refuse_config("experiment", "a key that is a number", "1: 2\nfoo: 3\nbatch_size: 384\n" + _TASKS, "foo", experiment=True)
refuse_config("experiment", "an unknown task key", "batch_size: 384\ntasks:\n  - {name: a, robot: hopper_box, "
              "colour: red}\n", "colour", experiment=True)
refuse_config("experiment", "torso_mass 1e30", "batch_size: 384\ntasks:\n  - {name: a, robot: hopper_box, "
              "torso_mass: 1.0e+30}\n", "torso", experiment=True)
refuse_config("experiment", "torso_mass -1", "batch_size: 384\ntasks:\n  - {name: a, robot: hopper_box, "
              "torso_mass: -1}\n", "torso_mass", experiment=True)
refuse_config("experiment", "mass_scale 0", "batch_size: 384\ntasks:\n  - {name: a, robot: hopper_box, "
              "mass_scale: 0}\n", "mass_scale", experiment=True)
refuse_config("experiment", "gears of the wrong count", "batch_size: 384\ntasks:\n  - {name: a, robot: hopper_box, "
              "gears: [1, 2]}\n", "gears", experiment=True)
refuse_config("experiment", "a URDF that does not exist", "batch_size: 384\ntasks:\n  - {name: a, robot: no.urdf, "
              "family: hopper}\n", "no.urdf", experiment=True)
refuse_config("experiment", "batch_size 0", "batch_size: 0\n" + _TASKS, "batch_size", experiment=True)
refuse_config("experiment", "not UTF-8", "batch_size: 384  # \xe9\n".encode("latin-1") + _TASKS.encode(),
              "bad.yaml", "UTF-8", experiment=True)
refuse_config("experiment", "tasks of different sizes", "batch_size: 384\ntasks: [hopper_box, biped_forward]\n",
              "dims", experiment=True)

# URDF robots
_URDF = (REPO / "urdf" / "hopper_capsule.urdf").read_text()
_ROBOT_TASK = "batch_size: 384\ntasks:\n  - {name: a, robot: robot.urdf, family: hopper}\n"


def refuse_urdf(name: str, urdf: str, *needles: str):
    refuse_config("urdf", name, _ROBOT_TASK, *needles, experiment=True, extra={"robot.urdf": urdf})


refuse_urdf("malformed XML", _URDF[:500], "malformed")
refuse_urdf("a prismatic joint", _URDF.replace('type="revolute"', 'type="prismatic"', 1), "prismatic")
refuse_urdf("a link without inertial", _URDF.replace("<inertial>", "<nothing>", 1).replace("</inertial>",
            "</nothing>", 1), "inertial")
refuse_urdf("a hinge about x (not planar)", _URDF.replace('<axis xyz="0 -1 0" />', '<axis xyz="1 0 0" />', 1),
            "axis")
refuse_urdf("a link of 1e30 kg", _URDF.replace('<mass value="3.534" />', '<mass value="1e30" />', 1), "kg")
refuse_urdf("a negative mass", _URDF.replace('<mass value="3.534" />', '<mass value="-1" />', 1), "mass")
refuse_urdf("two root links", _URDF.replace("</robot>", '<link name="extra"><inertial><mass value="1"/>'
            '<inertia ixx="1" iyy="1" izz="1" ixy="0" ixz="0" iyz="0"/></inertial></link></robot>'), "root")
refuse_urdf("a mesh without mt_primitive", _URDF.replace("<mt_primitive type", "<not_primitive type", 1), "mt_primitive")


# checkpoints and resume
def _spoil(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[-10] ^= 0xFF
        path.write_bytes(bytes(data))
    elif how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # a pickle in its place
        import pickle

        path.write_bytes(pickle.dumps({"policy": [1, 2, 3]}))


def _resume_past_damage(how: str):
    def run(w: Work) -> tuple[str, str]:
        run_dir = w.trained(samples=2304)  # checkpoints at iterations 3 and 6
        newest = ckpt_paths(run_dir)[-1]
        _spoil(newest, how)
        (run_dir / "config.yaml").write_text((run_dir / "config.yaml").read_text()
                                             .replace("samples: 2304", "samples: 3072").replace("jt: 2304", "jt: 3072"))
        proc = w.cli(["train", "--out", run_dir, "--resume"])
        if "Traceback" in proc.err:
            return "traceback", _last_line(proc.err)
        if proc.rc != 0:
            return "unclear", _last_line(proc.err)
        if newest.name not in proc.err:
            return "unclear", "resumed without naming the damaged checkpoint"
        return compare_to_reference(w, run_dir, 3072)
    return run


CASES.append(("checkpoint", "the newest checkpoint has a flipped bit", _resume_past_damage("flip")))
CASES.append(("checkpoint", "the newest checkpoint is cut short", _resume_past_damage("truncate")))
CASES.append(("checkpoint", "the newest checkpoint is a pickle", _resume_past_damage("pickle")))


@case("checkpoint", "every checkpoint damaged")
def _(w):
    run_dir = w.trained(samples=2304)
    for path in ckpt_paths(run_dir):
        _spoil(path, "flip")
    return refusal(w.cli(["train", "--out", run_dir, "--resume"]), *(p.name for p in ckpt_paths(run_dir)))


def _foreign_newest(w: Work, source: Path, run_dir: Path) -> Path:
    foreign = ckpt_paths(source)[-1]
    target = run_dir / "checkpoints" / "ckpt_000009999999.safetensors"
    shutil.copyfile(foreign, target)
    return target


@case("checkpoint", "another seed's checkpoint as the newest")
def _(w):
    run_dir = w.trained(samples=1152, seed=3)  # finished: a resume changes nothing of it
    before = json.loads((run_dir / "summary.json").read_text())
    target = _foreign_newest(w, w.trained("other", samples=2304, seed=2), run_dir)
    proc = w.cli(["train", "--out", run_dir, "--resume"])
    if "Traceback" in proc.err:
        return "traceback", _last_line(proc.err)
    after = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    if proc.rc == 0 and after != before:
        return "data loss", (f"exit 0 with the other run's state: summary.json now of {after.get('samples'):,} "
                             f"samples (the run's: {before['samples']:,}), other returns")
    if proc.rc == 0 and target.name in proc.err:
        return "holds", "skipped and named; the run's own state resumed"
    return refusal(proc, target.name)


@case("checkpoint", "another experiment's checkpoint as the newest")
def _(w):
    two = w.file("two.yaml", "name: two\nbatch_size: 256\nbudget: 3840\ntasks: [hopper_capsule, hopper_box]\n")
    other = w.cli(["train", two, *JOINT, "--config", w.settings, "--samples", "768", "--out", "two"])
    if other.rc != 0:
        return "skipped", "could not train the other experiment"
    run_dir = w.trained(samples=1152)
    target = _foreign_newest(w, w.dir / "two", run_dir)
    proc = w.cli(["train", "--out", run_dir, "--resume"])
    if "Traceback" in proc.err:
        return "traceback", _last_line(proc.err)
    if proc.rc == 0 and target.name in proc.err:
        return "holds", "skipped and named"
    return refusal(proc, target.name)


@case("checkpoint", "a group run whose only checkpoint is another experiment's")
def _(w):
    two = w.file("two.yaml", "name: two\nbatch_size: 256\nbudget: 3840\ntasks: [hopper_capsule, hopper_box]\n")
    if w.cli(["train", two, *JOINT, "--config", w.settings, "--samples", "768", "--out", "two"]).rc != 0:
        return "skipped", "could not train the other experiment"
    group = ["train", w.tiny, "--method", "joint", "--envs-per-task", "4", "--config", w.settings, "--seeds", "1-2",
             "--out", "g"]
    if w.cli(group + ["--samples", "1152"]).rc != 0:
        return "skipped", "could not train the group"
    for path in ckpt_paths(w.dir / "g" / "seed1"):
        path.unlink()
    _foreign_newest(w, w.dir / "two", w.dir / "g" / "seed1")
    (w.dir / "g" / "seed2" / "summary.json").unlink()
    proc = w.cli(group + ["--samples", "1152", "--resume"])
    if "Traceback" in proc.err:
        return "traceback", _last_line(proc.err)
    ok = (w.dir / "g" / "seed2" / "summary.json").exists()
    if proc.rc == 1 and "g/seed1" in proc.err and ok:
        return "clear", "that run stopped and named, the other resumed"
    return "unclear", f"exit {proc.rc}: {_last_line(proc.err)}"


@case("checkpoint", "a re-signed checkpoint with a changed config")
def _(w):
    from mt_specialize.learning import checkpoint as ckpt

    run_dir = w.trained(samples=2304)
    newest = ckpt_paths(run_dir)[-1]
    tensors, meta = ckpt.load_checkpoint(newest)
    meta["config"]["ppo"]["gamma"] = 0.5
    ckpt.save_checkpoint(newest, tensors, meta)
    (run_dir / "summary.json").unlink()
    proc = w.cli(["train", "--out", run_dir, "--resume"])
    if "Traceback" in proc.err:
        return "traceback", _last_line(proc.err)
    if proc.rc == 0 and newest.name in proc.err:
        return "holds", "skipped and named"
    if proc.rc == 0:
        return "silent", "resumed from a checkpoint whose config is not the run's"
    return refusal(proc, newest.name)


@case("checkpoint", "a damaged failure.json")
def _(w):
    run_dir = w.trained()
    (run_dir / "failure.json").write_text("{not json")
    return refusal(w.cli(["train", "--out", run_dir, "--resume"]), "failure.json")


@case("checkpoint", "a run's config.yaml not UTF-8")
def _(w):
    run_dir = w.trained()
    path = run_dir / "config.yaml"
    path.write_bytes(path.read_bytes().replace(b"seed: 3", b"seed: 3 # \xff"))
    return refusal(w.cli(["train", "--out", run_dir, "--resume"]), "config.yaml")


@case("checkpoint", "a garbage metrics row")
def _(w):
    run_dir = w.trained()
    rows = (run_dir / "metrics.csv").read_text().splitlines(keepends=True)
    (run_dir / "metrics.csv").write_text("".join(rows[:2] + ["garbage,row\r\n"] + rows[2:]))
    return refusal(w.cli(["train", "--out", run_dir, "--resume"]), "metrics.csv")


@case("checkpoint", "a temporary file of a killed checkpoint write")
def _(w):
    run_dir = w.trained(samples=1152)
    tmp = run_dir / "checkpoints" / ".ckpt_000000001536.safetensors.abcd1234.tmp"
    tmp.write_bytes(b"\0" * 500_000)
    (run_dir / "config.yaml").write_text((run_dir / "config.yaml").read_text()
                                         .replace("samples: 1152", "samples: 1536").replace("jt: 1152", "jt: 1536"))
    proc = w.cli(["train", "--out", run_dir, "--resume"])
    if proc.rc != 0:
        return refusal(proc)
    if tmp.exists():
        return "unclear", "the 500 kB temporary file is still there after the resume"
    return "holds", "removed when the run was opened"


@case("checkpoint", "export of a run whose newest checkpoint is damaged")
def _(w):
    run_dir = w.trained(samples=2304)
    _spoil(ckpt_paths(run_dir)[-1], "truncate")
    proc = w.cli(["export", run_dir, "policy.safetensors"])
    if proc.rc == 0 and (w.dir / "policy.safetensors").exists():
        return "holds", "fell back to the newest checkpoint that verifies"
    return ("traceback" if "Traceback" in proc.err else "unclear"), _last_line(proc.err)


@case("checkpoint", "gait of a run whose newest checkpoint is damaged")
def _(w):
    run_dir = w.trained(samples=2304)
    _spoil(ckpt_paths(run_dir)[-1], "truncate")
    proc = w.cli(["gait", run_dir, "hopper_capsule", "g.gif", "--steps", "4", "--width", "32", "--height", "32"])
    if proc.rc == 0 and (w.dir / "g.gif").exists():
        return "holds", "fell back to the newest checkpoint that verifies"
    return ("traceback" if "Traceback" in proc.err else "unclear"), _last_line(proc.err)


# crashes, signals, disks
def _kill_before_first_checkpoint(w: Work, args: list, run_dirs: list[Path]) -> bool:
    proc = w.start(args, stderr=subprocess.DEVNULL)
    ok = wait_for(lambda: all(rows_written(d) >= 1 for d in run_dirs))
    proc.kill()
    proc.wait()
    return ok and not any(ckpt_paths(d) for d in run_dirs)


@case("crash", "SIGKILL before the first checkpoint, then --resume")
def _(w):
    if not _kill_before_first_checkpoint(w, w.train("run", "--samples", "1152"), [w.dir / "run"]):
        return "skipped", "could not kill before the first checkpoint"
    proc = w.cli(["train", "--out", "run", "--resume"])
    if proc.rc != 0:
        return refusal(proc)
    return compare_to_reference(w, w.dir / "run", 1152)


@case("crash", "SIGKILL before the first checkpoint of a --seeds group, then --resume")
def _(w):
    group = ["train", w.tiny, "--method", "joint", "--envs-per-task", "4", "--config", w.settings, "--seeds", "3-4",
             "--samples", "1152", "--out", "g"]
    if not _kill_before_first_checkpoint(w, group, [w.dir / "g" / "seed3", w.dir / "g" / "seed4"]):
        return "skipped", "could not kill before the first checkpoint"
    proc = w.cli(group + ["--resume"])
    if proc.rc != 0:
        return refusal(proc)
    return compare_to_reference(w, w.dir / "g" / "seed3", 1152)


@case("crash", "SIGKILL after a checkpoint, then --resume")
def _(w):
    proc = w.start(w.train("run", "--samples", "2304"), stderr=subprocess.DEVNULL)
    wait_for(lambda: rows_written(w.dir / "run") >= 4)
    proc.kill()
    proc.wait()
    resumed = w.cli(["train", "--out", "run", "--resume"])
    if resumed.rc != 0:
        return refusal(resumed)
    return compare_to_reference(w, w.dir / "run", 2304)


@case("crash", "SIGINT, then --resume")
def _(w):
    proc = w.start(w.train("run", "--samples", "2304"))
    wait_for(lambda: rows_written(w.dir / "run") >= 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode != 130 or "Traceback" in err:
        return ("traceback" if "Traceback" in err else "unclear"), _last_line(err)
    resumed = w.cli(["train", "--out", "run", "--resume"])
    if resumed.rc != 0:
        return refusal(resumed)
    return compare_to_reference(w, w.dir / "run", 2304)


def _twice(sig: int):
    def run(w: Work) -> tuple[str, str]:
        slow = w.file("slow.yaml", "checkpoint_every: 3\nppo: {minibatch_per_task: 64, epochs: 40}\n")
        proc = w.start(w.train("run", "--samples", "384000", settings=slow))
        wait_for(lambda: rows_written(w.dir / "run") >= 1)
        proc.send_signal(sig)
        time.sleep(0.3)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        return refusal(Proc(proc.returncode, "", err), "stopped", rc=128 + sig)
    return run


CASES.append(("signal", "SIGINT twice", _twice(signal.SIGINT)))
CASES.append(("signal", "SIGTERM twice", _twice(signal.SIGTERM)))


@case("signal", "SIGINT during start-up")
def _(w):
    proc = w.start(w.train("run", "--samples", "3840"))
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    category, detail = refusal(Proc(proc.returncode, "", err), rc=130)
    again = w.cli(w.train("run", "--samples", "768"))
    if category == "clear" and again.rc != 0:
        return "unclear", f"the next start fails: {_last_line(again.err)}"
    return category, detail


@case("disk", "--out a file")
def _(w):
    w.file("afile", "")
    return refusal(w.cli(w.train("afile", "--samples", "768")), "afile")


@case("disk", "--out below a file")
def _(w):
    w.file("afile", "")
    return refusal(w.cli(w.train("afile/run", "--samples", "768")), "afile")


@case("disk", "--out on a read-only file system")
def _(w):
    ro = w.mount("ro", "1m", "ro")
    if ro is None:
        return "skipped", "no tmpfs (not root)"
    return refusal(w.cli(w.train(ro / "run", "--samples", "768")), "read-only")


def _full_disk(at_first: bool):
    def run(w: Work) -> tuple[str, str]:
        disk = w.mount("disk", "400k" if at_first else "1200k")
        if disk is None:
            return "skipped", "no tmpfs (not root)"
        every = w.file("every.yaml", "checkpoint_every: 1\nkeep_checkpoints: 100\n"
                                     "ppo: {minibatch_per_task: 64, epochs: 2}\n")
        if at_first:
            every = w.file("every.yaml", SETTINGS)  # first checkpoint at iteration 3
        proc = w.cli(w.train(disk / "run", "--samples", "1152", settings=every))
        category, detail = refusal(proc, "No space left", "--resume")
        if category != "clear":
            return category, detail
        from mt_specialize.learning import checkpoint as ckpt

        for path in ckpt_paths(disk / "run"):
            try:
                ckpt.load_checkpoint(path)
            except ckpt.CheckpointError as exc:
                return "data loss", f"an earlier checkpoint does not verify: {exc}"
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        resumed = w.cli(["train", "--out", disk / "run", "--resume"])
        if resumed.rc != 0:
            return refusal(resumed)
        category, detail = compare_to_reference(w, disk / "run", 1152)
        return ("clear", "exit 2 naming the file and --resume; the resume is exact") if category == "holds" \
            else (category, detail)
    return run


CASES.append(("disk", "a full disk at the first checkpoint, then --resume", _full_disk(True)))
CASES.append(("disk", "a full disk at a later checkpoint, then --resume", _full_disk(False)))


# divergence
def _diverging(method: str):
    def run(w: Work) -> tuple[str, str]:
        lr = w.file("lr.yaml", "checkpoint_every: 2\nppo: {minibatch_per_task: 64, epochs: 2, lr: 1000}\n")
        args = ["train", w.tiny, "--method", method, "--seed", "3", "--envs-per-task", "4", "--config", lr,
                "--samples", "3840", "--out", "run"] + (["--jt", "1536"] if method == "ours" else [])
        proc = w.cli(args)
        summary = w.dir / "run" / "summary.json"
        if proc.rc == 0:
            bare_nan = summary.exists() and "NaN" in summary.read_text()
            return "silent", "exit 0" + (", summary.json with bare NaN" if bare_nan else "")
        category, detail = refusal(proc, "diverged", "lr", rc=1)
        if category == "clear" and not (w.dir / "run" / "failure.json").exists():
            return "unclear", "no failure.json"
        return category, detail
    return run


CASES.append(("divergence", "ppo.lr 1000 (joint)", _diverging("joint")))
CASES.append(("divergence", "ppo.lr 1000 (gradient_guided)", _diverging("ours")))


def _nan_policy(w: Work) -> Path:
    import torch

    from mt_specialize.learning import checkpoint as ckpt

    tensors, meta = ckpt.load_checkpoint(ckpt_paths(w.trained())[-1])
    name = next(k for k in sorted(tensors) if k.startswith("policy/") and tensors[k].is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    return ckpt.save_checkpoint(w.dir / "nan.safetensors", tensors, meta)


@case("divergence", "export of a NaN policy")
def _(w):
    nan = _nan_policy(w)
    return refusal(w.cli(["export", nan, "policy.safetensors"]), "non-finite")


@case("divergence", "gait of a NaN policy")
def _(w):
    nan = _nan_policy(w)
    return refusal(w.cli(["gait", nan, "hopper_capsule", "g.gif", "--steps", "4", "--width", "32", "--height",
                          "32"]), "non-finite")


@case("divergence", "serving a NaN policy (InferencePolicy.from_checkpoint)")
def _(w):
    nan = _nan_policy(w)
    proc = w.python("from mt_specialize.learning.inference import InferencePolicy\n"
                    f"InferencePolicy.from_checkpoint({str(nan)!r})\nprint('loaded')")
    if "loaded" in proc.out:
        return "silent", "loaded a NaN policy"
    return ("clear", "CheckpointError") if "CheckpointError" in proc.err and "non-finite" in proc.err \
        else ("unclear", _last_line(proc.err))


# export and gait
def _dest(command: str, where: str):
    def run(w: Work) -> tuple[str, str]:
        run_dir = w.trained()
        name = "p.safetensors" if command == "export" else "g.gif"
        if where == "directory":
            w.dir.joinpath("outdir").mkdir()
            out, needle = "outdir", "outdir"
        elif where == "below a file":
            w.file("afile", "")
            out, needle = f"afile/{name}", "afile"
        else:
            ro = w.mount("ro", "1m", "ro")
            if ro is None:
                return "skipped", "no tmpfs (not root)"
            out, needle = ro / name, "read-only"
        more = ["hopper_capsule"] if command == "gait" else []
        return refusal(w.cli([command, run_dir, *more, out, *(["--steps", "4"] if more else [])]), needle)
    return run


for _command in ("export", "gait"):
    for _where in ("directory", "below a file", "read-only"):
        CASES.append(("export/gait", f"{_command} to {'a ' if _where == 'directory' else ''}{_where}",
                      _dest(_command, _where)))


def _gait_refused(name: str, flags: list, *needles: str):
    def run(w: Work) -> tuple[str, str]:
        run_dir = w.trained()
        proc = w.cli(["gait", run_dir, "hopper_capsule", "g.gif", *flags])
        category, detail = refusal(proc, *needles)
        if category == "silent" and (w.dir / "g.gif").exists():
            detail += f", wrote a {(w.dir / 'g.gif').stat().st_size}-byte gif"
        return category, detail
    CASES.append(("export/gait", name, run))


_gait_refused("gait --width 0", ["--width", "0", "--steps", "4"], "width")
_gait_refused("gait --width 100000", ["--width", "100000", "--steps", "4"], "width")
_gait_refused("gait --steps 0", ["--steps", "0"], "steps")
_gait_refused("gait --switch-at without --switch-to", ["--steps", "4", "--switch-at", "2"], "--switch-to")


@case("export/gait", "gait of a task the policy lacks")
def _(w):
    run_dir = w.trained()
    return refusal(w.cli(["gait", run_dir, "hopper_cube", "g.gif", "--steps", "4"]), "hopper_cube")


@case("export/gait", "gait to a .png")
def _(w):
    run_dir = w.trained()
    return refusal(w.cli(["gait", run_dir, "hopper_capsule", "g.png", "--steps", "4"]), ".gif")


@case("export/gait", "export of a missing source")
def _(w):
    return refusal(w.cli(["export", "missing.safetensors", "p.safetensors"]), "missing.safetensors")


# -- running them --------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", type=Path, help="a checkout whose mt_specialize to attack (default: this one)")
    parser.add_argument("--only", help="only cases whose group or name contains this text")
    parser.add_argument("--json", type=Path, help="write every case's result to this file")
    args = parser.parse_args()
    code = args.code.resolve() if args.code else None
    cases = [c for c in CASES if not args.only or args.only in c[0] or args.only in c[1]]
    results = []
    with tempfile.TemporaryDirectory(prefix="fault_cases_") as root:
        cache = Path(root) / "cache"
        cache.mkdir()
        for k, (group, name, fn) in enumerate(cases):
            w = Work(Path(root) / f"case{k}", code, cache)
            w.dir.mkdir()
            start = time.perf_counter()
            try:
                category, detail = fn(w)
            except Exception as exc:  # the harness's own failure: reported, never counted as the package's
                category, detail = "skipped", f"harness error {type(exc).__name__}: {exc}"
            finally:
                w.unmount_all()
            seconds = time.perf_counter() - start
            results.append({"group": group, "case": name, "result": category, "detail": detail, "s": round(seconds, 1)})
            print(f"{category:10s} {group:12s} {name:58s} {detail[:110]}", flush=True)
    totals = {c: sum(r["result"] == c for r in results) for c in CATEGORIES}
    print(f"\n{len(results)} cases: " + ", ".join(f"{n} {c}" for c, n in totals.items()))
    if args.json:
        args.json.write_text(json.dumps({"code": str(code or REPO), "totals": totals, "cases": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
