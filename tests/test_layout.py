"""The layout holds: imports form a DAG at package and at module level (imports inside functions included), no
module reads another package's private names, and the light core imports nothing heavy at import time."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "maskrt"


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: pathlib.Path, modules) -> set[str]:
    """maskrt modules that ``module`` imports anywhere in its source (names imported from a package count as
    imports of that package and of the submodule when there is one)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            target = _resolve(name, modules)
            if target and target.startswith("maskrt") and target != module and not module.startswith(target + "."):
                found.add(target)
    return found


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def _graph():
    modules = _modules()
    return modules, {m: _imports(m, p, modules) for m, p in modules.items()}


def test_imports_form_a_dag_at_module_and_package_level():
    modules, edges = _graph()
    assert len(modules) > 80
    assert _cycles(edges) == []
    packages: dict[str, set[str]] = {}
    for a, targets in edges.items():
        for b in targets:
            pa, pb = ".".join(a.split(".")[:2]), ".".join(b.split(".")[:2])
            if pa != pb:
                packages.setdefault(pa, set()).add(pb)
    assert _cycles(packages) == []


def test_the_cycle_check_can_fail():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_lower_rooms_never_import_higher_ones():
    order = ["maskrt.core", "maskrt.ops", "maskrt.model", "maskrt.data", "maskrt.plugins", "maskrt.export",
             "maskrt.check", "maskrt.backends", "maskrt.inference", "maskrt.evaluation", "maskrt.profiling",
             "maskrt.serving", "maskrt.cli"]
    rank = {p: i for i, p in enumerate(order)}
    _, edges = _graph()
    wrong = []
    for a, targets in edges.items():
        pa = ".".join(a.split(".")[:2])
        for b in targets:
            pb = ".".join(b.split(".")[:2])
            if pa in rank and pb in rank and rank[pb] > rank[pa]:
                wrong.append(f"{a} -> {b}")
    assert wrong == []


def test_no_module_reads_another_packages_private_names():
    modules = _modules()
    offenders = []
    for module, path in modules.items():
        package = ".".join(module.split(".")[:2])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("maskrt"):
                other = ".".join(node.module.split(".")[:2])
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private and other != package:
                    offenders.append(f"{module}: from {node.module} import {', '.join(private)}")
    assert offenders == []


def test_the_core_imports_nothing_heavy():
    code = ("import sys\n"
            "import maskrt.core.errors, maskrt.core.fileio, maskrt.core.formatting, maskrt.core.parsing, "
            "maskrt.core.metadata, maskrt.core.onnxfile, maskrt.core.environment, maskrt.cli.app\n"
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'numpy', 'tensorrt') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
