"""The shape of the package at a git revision: modules, lines, the longest functions, the largest classes.

    python scripts/code_shape.py [REV ...] [--top N] [--package mt_specialize]

Reads the ``.py`` files under the package at each revision with ``git show`` (the work tree when REV is
omitted) and prints, per revision, a markdown table: module count and lines, the N longest functions and
methods (lines, from ``def`` to the last line of the body) and the N largest classes (methods, lines).
"""
from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _sources(rev: str | None, package: str) -> dict[str, str]:
    """{path: source} of the package's modules at ``rev`` (None: the work tree)."""
    if rev is None:
        return {str(p.relative_to(ROOT)): p.read_text() for p in sorted((ROOT / package).rglob("*.py"))}
    try:
        listing = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, package], cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout.split()
    except subprocess.CalledProcessError as exc:
        print(f"code_shape: no revision {rev!r} in this repository ({exc.stderr.strip()})", file=sys.stderr)
        sys.exit(2)
    return {p: subprocess.run(["git", "show", f"{rev}:{p}"], cwd=ROOT, check=True, capture_output=True,
                              text=True).stdout for p in listing if p.endswith(".py")}


def shape(sources: dict[str, str]) -> dict:
    """Modules, lines, [(lines, 'module:qualname')] of functions and [(methods, lines, name)] of classes."""
    functions, classes = [], []
    for path, text in sources.items():
        module = path.removesuffix(".py").replace("/", ".")

        def visit(node, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    functions.append((child.end_lineno - child.lineno + 1, f"{module}:{prefix}{child.name}"))
                    visit(child, f"{prefix}{child.name}.")
                elif isinstance(child, ast.ClassDef):
                    methods = [c for c in child.body if isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef))]
                    classes.append((len(methods), child.end_lineno - child.lineno + 1, f"{module}:{prefix}{child.name}"))
                    visit(child, f"{prefix}{child.name}.")

        visit(ast.parse(text), "")
    return {"modules": len(sources), "lines": sum(t.count("\n") for t in sources.values()),
            "largest_modules": sorted(((t.count("\n"), p) for p, t in sources.items()), reverse=True),
            "functions": sorted(functions, reverse=True), "classes": sorted(classes, key=lambda c: (c[1], c[0]),
                                                                              reverse=True)}


def report(label: str, s: dict, top: int) -> str:
    lines = [f"### {label}: {s['modules']} modules, {s['lines']:,} lines", "",
             "| largest modules | lines |", "|---|---:|"]
    lines += [f"| {p} | {n} |" for n, p in s["largest_modules"][:top]]
    lines += ["", "| longest functions | lines |", "|---|---:|"]
    lines += [f"| {name} | {n} |" for n, name in s["functions"][:top]]
    lines += ["", "| largest classes | methods | lines |", "|---|---:|---:|"]
    lines += [f"| {name} | {m} | {n} |" for m, n, name in s["classes"][:top]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revs", nargs="*", help="git revisions (default: the work tree)")
    parser.add_argument("--top", type=int, default=8, help="rows per table (default 8)")
    parser.add_argument("--package", default="mt_specialize", help="the package directory (default mt_specialize)")
    args = parser.parse_args(argv)
    for rev in args.revs or [None]:
        print(report(rev or "work tree", shape(_sources(rev, args.package)), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
