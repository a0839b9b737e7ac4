"""A test helper run as a process: ``python test/fault_injection.py WHEN -- ARGS`` runs ``mt-specialize
ARGS`` and kills its own process with SIGKILL (no clean-up of any kind) at the moment WHEN names:

    row:N   right after the N-th metrics row this process writes
    tmp:N   in the middle of the N-th checkpoint write: its temporary file written and synced, not renamed
    none    never
"""
import os
import signal
import sys


def main() -> int:
    when, separator, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    assert separator == "--", __doc__
    kind, _, n = when.partition(":")
    from mt_specialize import cli
    from mt_specialize import run_dir
    from mt_specialize.learning import checkpoint as ckpt

    count = 0

    def tick() -> None:
        nonlocal count
        count += 1
        if count == int(n):
            os.kill(os.getpid(), signal.SIGKILL)

    if kind == "row":
        append = run_dir.RunDir.append_metrics

        def append_then_tick(self, row, step):
            append(self, row, step)
            tick()
        run_dir.RunDir.append_metrics = append_then_tick
    elif kind == "tmp":
        replace = ckpt.os.replace

        def tick_then_replace(source, target, *a, **k):
            if os.path.basename(target).startswith("ckpt_"):
                tick()
            return replace(source, target, *a, **k)
        ckpt.os.replace = tick_then_replace
    elif kind != "none":
        raise SystemExit(f"unknown moment {when!r}")
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
