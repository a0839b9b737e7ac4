"""The package's import graph follows docs/design.md: layers point down, no cycles, ROS and
matplotlib stay out of the core. Read statically from the source with ``ast`` (imports inside
functions count; imports under ``if TYPE_CHECKING:`` do not)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "mt_specialize"

# dotted-name prefix -> layer; the longest matching prefix decides (docs/design.md)
LAYERS = {
    "mt_specialize": 0,
    "mt_specialize.paths": 0,
    "mt_specialize.errors": 0,
    "mt_specialize.profiles": 0,
    "mt_specialize.settings": 0,
    "mt_specialize.yaml_files": 0,
    "mt_specialize.envs": 1,
    "mt_specialize.learning": 2,
    "mt_specialize.experiments": 3,
    "mt_specialize.config": 3,
    "mt_specialize.methods": 3,
    "mt_specialize.train": 3,
    "mt_specialize.train_state": 3,
    "mt_specialize.revert_rule": 3,
    "mt_specialize.episodes": 3,
    "mt_specialize.run_group": 3,
    "mt_specialize.stop_signals": 3,
    "mt_specialize.run_dir": 3,
    "mt_specialize.plots": 3,
    "mt_specialize.ros": 4,
    "mt_specialize.cli": 5,
}
LAYER_NAMES = {0: "base", 1: "envs", 2: "learning", 3: "application", 4: "ROS", 5: "entry"}
RENDERING = ("mt_specialize.envs.render", "mt_specialize.envs.gait")  # learning never imports these
ROS_PACKAGE = "mt_specialize.ros"  # its modules are the only importers of rclpy


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imports_of(source: str, name: str, is_package: bool, modules: set[str]) -> list[tuple[str, bool]]:
    """(imported module, at module level) for every import in the source of module ``name``;
    ``from pkg import mod`` names the module ``pkg.mod`` when it is one of ``modules``."""
    package = name if is_package else name.rpartition(".")[0]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if is_type_checking_block(child):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, top_level) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base_parts = package.split(".")[:len(package.split(".")) - child.level + 1]
                    base = ".".join(base_parts + ([child.module] if child.module else []))
                else:
                    base = child.module
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    found.append((full if full in modules else base, top_level))
            inner = top_level and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, inner)

    visit(ast.parse(source, name), True)
    return found


def layer_of(module: str) -> int:
    matches = [prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")]
    return LAYERS[max(matches, key=len)]


@pytest.fixture(scope="module")
def graph() -> dict[str, list[tuple[str, bool]]]:
    paths = sorted(PACKAGE_DIR.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p.read_text(), module_name(p), p.name == "__init__.py", modules)
            for p in paths}


def internal_edges(graph) -> dict[str, set[str]]:
    return {m: {target for target, _ in imports if target in graph and target != m} for m, imports in graph.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_reader_sees_function_level_imports_and_names_submodules():
    modules = {"mt_specialize", "mt_specialize.envs", "mt_specialize.envs.tasks", "mt_specialize.envs.render"}
    source = ("from . import render\nfrom .tasks import TaskSpec\nfrom typing import TYPE_CHECKING\n"
              "if TYPE_CHECKING:\n    from mt_specialize import train\n"
              "def f():\n    import rclpy\n")
    found = imports_of(source, "mt_specialize.envs.gait", False, modules)
    assert ("mt_specialize.envs.render", True) in found
    assert ("mt_specialize.envs.tasks", True) in found
    assert ("rclpy", False) in found
    assert not any(target == "mt_specialize.train" for target, _ in found)


def test_find_cycle_reports_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_every_module_has_a_layer(graph):
    unplaced = [m for m in graph if not any(m == p or m.startswith(p + ".") for p in LAYERS if p != "mt_specialize")
                and m != "mt_specialize"]
    assert not unplaced, f"place these modules in a layer (LAYERS here and docs/design.md): {unplaced}"


def test_no_import_cycles(graph):
    cycle = find_cycle(internal_edges(graph))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_point_down(graph):
    upward = [f"{m} ({LAYER_NAMES[layer_of(m)]}) imports {t} ({LAYER_NAMES[layer_of(t)]})"
              for m, targets in internal_edges(graph).items() for t in sorted(targets) if layer_of(t) > layer_of(m)]
    assert not upward, "\n".join(upward)


def test_learning_never_imports_rendering(graph):
    bad = [f"{m} imports {t}" for m, targets in internal_edges(graph).items() if layer_of(m) == 2
           for t in targets if t.startswith(RENDERING)]
    assert not bad, bad


def test_only_ros_modules_import_rclpy(graph):
    bad = [m for m, imports in graph.items() if not (m == ROS_PACKAGE or m.startswith(ROS_PACKAGE + "."))
           and any(t == "rclpy" or t.startswith("rclpy.") for t, _ in imports)]
    assert not bad, f"modules outside {ROS_PACKAGE} import rclpy: {bad}"


def test_the_trainer_owns_no_process_signals(graph):
    """Signals belong to the programs (CLI, grid workers, ROS nodes): they pass ``run`` a stop predicate."""
    bad = [m for m, imports in graph.items() if (m in ("mt_specialize.train", "mt_specialize.run_group") or layer_of(m) in (1, 2))
           and any(t == "signal" for t, _ in imports)]
    assert not bad, f"these modules import signal: {bad}"


@pytest.mark.parametrize("module", ["mt_specialize.train", "mt_specialize.config", "mt_specialize.experiments"])
def test_core_modules_load_neither_matplotlib_nor_rclpy(module):
    code = (f"import sys, {module}\n"
            "print(sorted(m for m in ('matplotlib', 'rclpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"importing {module} loads {out.stdout.strip()}"


def installed_packages(monkeypatch) -> list[str]:
    """The ``packages`` setup.py passes to setuptools (colcon and pip install the same list)."""
    import runpy

    import setuptools

    captured: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.chdir(PACKAGE_DIR.parent)
    runpy.run_path("setup.py")
    return list(captured["packages"])


def test_every_source_directory_is_an_installed_package(monkeypatch):
    """A directory of modules that setup.py does not list (e.g. one without ``__init__.py``) would be
    left out of colcon and pip installs: it would work only from a checkout."""
    sources = sorted(module_name(d / "__init__.py") for d in {p.parent for p in PACKAGE_DIR.rglob("*.py")}
                     if "__pycache__" not in d.parts)
    installed = installed_packages(monkeypatch)
    assert set(sources) <= set(installed), f"not installed: {sorted(set(sources) - set(installed))}"


def test_only_the_package_is_installed(monkeypatch):
    """The paper's research tooling (paper/), the tests and the benchmarks stay in the checkout."""
    assert all(p == "mt_specialize" or p.startswith("mt_specialize.") for p in installed_packages(monkeypatch))


def test_the_package_never_imports_the_research_tooling(graph):
    bad = [f"{m} imports {t}" for m, imports in graph.items() for t, _ in imports
           if t == "paper" or t.startswith("paper.")]
    assert not bad, bad


def test_only_the_engine_registry_names_an_engine_module(graph):
    """An engine is one module behind ``envs.engine`` (its registry imports it by name): no other module
    of the package imports an engine module, so adding an engine touches one new file and one
    registry line."""
    from mt_specialize.envs.engine import ENGINES

    engine_modules = set(ENGINES.values())
    bad = [f"{m} imports {t}" for m, targets in internal_edges(graph).items() if m not in engine_modules
           for t in targets if t in engine_modules]
    assert not bad, bad
    assert all(m in graph for m in engine_modules), "every registered engine is a module of the package"


def test_profiles_settings_and_the_cli_parser_load_no_heavy_library():
    """The profiles' and the training settings' homes are read by the CLI's --help, the ROS nodes, the
    launch file and the report: neither they nor building the command's parser import torch, MuJoCo,
    NumPy or rclpy."""
    code = ("import sys, mt_specialize.profiles, mt_specialize.settings, mt_specialize.config, mt_specialize.cli; "
            "mt_specialize.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'mujoco', 'numpy', 'rclpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_only_the_learner_node_reads_the_training_config(graph):
    """A ROS module other than the learner takes what it shares with training (the default profile, the
    profiles' names) from ``profiles``, not from ``config.TrainConfig``."""
    bad = [m for m, targets in internal_edges(graph).items() if m.startswith(ROS_PACKAGE + ".")
           and m != "mt_specialize.ros.learner" and "mt_specialize.config" in targets]
    assert not bad, f"these ROS modules import mt_specialize.config: {bad}"


@pytest.mark.parametrize("node", ["simulator", "policy_server", "foxglove_view"])
def test_no_ros_node_but_the_learner_loads_torch_to_declare_its_parameters(node):
    """Importing a node's module loads no torch: its parameters and their defaults come from torch-free
    modules (the policy server loads torch with its first policy; the learner trains)."""
    pytest.importorskip("rclpy")
    code = f"import sys, mt_specialize.ros.{node}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode and "ModuleNotFoundError" in out.stderr:  # an optional dependency of that node
        pytest.skip(out.stderr.strip().splitlines()[-1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False", f"importing mt_specialize.ros.{node} loads torch"
