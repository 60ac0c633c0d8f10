"""Every TensorRT name maskrt uses exists in the TensorRT releases it supports (10.16 and 11.1).

TensorRT cannot be installed here, so the names are checked against the API surfaces in
``shared/tensorrt-api/tensorrt-<version>.json`` (lists of the Python bindings' classes, members and enums).
The list of used names is derived from the syntax tree of maskrt's source, not written by hand:

* only :mod:`maskrt.export.engine_trt` may import tensorrt or use a ``trt`` name;
* every attribute chain rooted at the tensorrt module (``trt.X``, ``trt.X.Y``) is checked;
* every attribute read or written on a name declared in ``engine_trt.TRT_OBJECTS`` is checked against the
  declared class (and its bases);
* so that nothing slips past, every name whose attributes the module reads must be declared (TensorRT object,
  plain value, or an imported module), every name assigned from an expression involving TensorRT must be
  declared, and an attribute may not be taken directly from a call or subscript on a TensorRT value;
* names inside functions listed in ``engine_trt.VERSION_GATED`` are checked against those versions only, and
  such functions must begin with the ``_gate`` call that enforces it at run time.

The tests at the bottom feed the checker small sources that break each rule, so it is shown to fail.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import re
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "maskrt"
THIN = PACKAGE / "export" / "engine_trt.py"


FIXTURES = ROOT / "tests" / "fixtures" / "tensorrt_api"  # trimmed copies (tools/trim_tensorrt_api.py)


def _full_surface_dir():
    candidates = [os.environ.get("MASKRT_TRT_API_DIR"), ROOT / "shared" / "tensorrt-api",
                  ROOT.parent / "shared" / "tensorrt-api"]
    for c in candidates:
        if c and (pathlib.Path(c) / "tensorrt-11.1.json").is_file():
            return pathlib.Path(c)
    return None


def _surface_dir() -> pathlib.Path:
    """The full surfaces when present (../shared/tensorrt-api or MASKRT_TRT_API_DIR), else the trimmed copies."""
    return _full_surface_dir() or FIXTURES


def test_trimmed_surfaces_match_the_full_ones():
    """The checked-in copies are exactly tools/trim_tensorrt_api.py's trimming of the full surfaces."""
    full = _full_surface_dir()
    if full is None:
        pytest.skip("the full TensorRT API surfaces are not here (../shared/tensorrt-api); the trimmed copies are used")
    import importlib.util

    spec = importlib.util.spec_from_file_location("trim_tensorrt_api", ROOT / "tools" / "trim_tensorrt_api.py")
    trim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trim)
    for version in ("10.16", "11.1"):
        with open(full / f"tensorrt-{version}.json", encoding="utf-8") as f:
            expected = trim.trim(json.load(f))
        with open(FIXTURES / f"tensorrt-{version}.json", encoding="utf-8") as f:
            assert json.load(f) == expected, f"run: python tools/trim_tensorrt_api.py (TensorRT {version})"


@pytest.fixture(scope="module")
def surfaces() -> dict:
    folder = _surface_dir()
    out = {}
    for version in ("10.16", "11.1"):
        with open(folder / f"tensorrt-{version}.json", encoding="utf-8") as f:
            out[version] = Surface(json.load(f))
    return out


class Surface:
    def __init__(self, data: dict):
        self.data = data
        self.version = data["version"]
        self.major = int(self.version.split(".")[0])
        self.classes = data["classes"]
        self.enums = data["enums"]

    def module_has(self, name: str) -> bool:
        d = self.data
        return (name in d["module_functions"] or name in d["module_attributes"] or name in self.classes
                or name in self.enums or name in d.get("submodules", {}))

    def members(self, cls: str) -> set:
        out, todo = set(), [cls]
        while todo:
            c = self.classes.get(todo.pop())
            if c is None:
                continue
            for key in ("methods", "properties", "readonly_properties", "attributes"):
                out.update(c.get(key) or [])
            todo.extend(c.get("bases") or [])
        return out

    def has_member(self, owner: str, member: str) -> bool:
        if owner in self.classes:
            return member in self.members(owner)
        if owner in self.enums:
            extras = self.data.get("enum_extras", {}).get(owner, {})
            return member in self.enums[owner] or any(member in v for v in extras.values())
        return False


# -- the checker -------------------------------------------------------------------------------------------------
def _chain(node):
    """``a.b.c`` -> ["a", "b", "c"]; None when the root is not a plain name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


class Declarations:
    def __init__(self, module_names, objects, plain, gated):
        self.module_names = tuple(module_names)
        self.objects = dict(objects)
        self.plain = set(plain)
        self.gated = dict(gated)


def _mentions_trt(expr, decl: Declarations) -> bool:
    for node in ast.walk(expr):
        if isinstance(node, ast.Name) and (node.id in decl.module_names or node.id in decl.objects):
            return True
        if isinstance(node, ast.Attribute):
            c = _chain(node)
            if c and len(c) >= 2 and (".".join(c[:2]) in decl.objects or ".".join(c[:2]) in decl.module_names):
                return True
    return False


def check_source(source: str, decl: Declarations, surfaces: dict) -> tuple[list[str], list[tuple]]:
    """Problems, and the (versions, owner, member) uses that were checked."""
    tree = ast.parse(source)
    problems, uses = [], []
    imported = set()
    defined = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                imported.add((alias.asname or alias.name).split(".")[0])
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
    parents = {}
    functions = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for inner in ast.walk(node):
                functions[inner] = _innermost(inner, parents)
    all_versions = tuple(surfaces)

    def versions_for(node):
        fn = functions.get(node)
        majors = decl.gated.get(fn)
        if majors is None:
            return all_versions
        return tuple(v for v in all_versions if surfaces[v].major in majors)

    def check(owner_kind, owner, member, node, where):
        vs = versions_for(node)
        uses.append((vs, owner, member))
        for v in vs:
            s = surfaces[v]
            ok = s.module_has(member) if owner_kind == "module" else s.has_member(owner, member)
            if not ok:
                what = f"tensorrt.{member}" if owner_kind == "module" else f"{owner}.{member}"
                problems.append(f"line {node.lineno}: {where}: {what} is not in TensorRT {v}")

    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        parent = parents.get(node)
        if isinstance(parent, ast.Attribute) and parent.value is node:
            continue  # handled with the whole chain
        chain = _chain(node)
        text = ast.unparse(node)
        if chain is None:
            if _mentions_trt(_strip_args(node.value), decl):
                problems.append(f"line {node.lineno}: {text}: an attribute of an undeclared TensorRT value; assign it to "
                                "a name declared in TRT_OBJECTS or PLAIN_NAMES first")
            continue
        head2 = ".".join(chain[:2]) if len(chain) > 1 else None
        if chain[0] in decl.module_names or head2 in decl.module_names:
            rest = chain[1:] if chain[0] in decl.module_names else chain[2:]
            if not rest:
                continue
            check("module", None, rest[0], node, text)
            if len(rest) == 2:
                owner = rest[0]
                if all(surfaces[v].module_has(owner) for v in versions_for(node)):
                    check("member", owner, rest[1], node, text)
            elif len(rest) > 2:
                problems.append(f"line {node.lineno}: {text}: chains deeper than tensorrt.X.Y are not checked; "
                                "assign the intermediate value to a declared name")
            continue
        if head2 in decl.objects:
            owner, rest = decl.objects[head2], chain[2:]
        elif chain[0] in decl.objects:
            owner, rest = decl.objects[chain[0]], chain[1:]
        else:
            if chain[0] not in decl.plain and chain[0] not in imported and chain[0] not in defined:
                problems.append(f"line {node.lineno}: {text}: name {chain[0]!r} is not declared (TRT_OBJECTS, "
                                "PLAIN_NAMES) nor imported")
            continue
        if not rest:
            continue
        check("member", owner, rest[0], node, text)
        if len(rest) > 1:
            problems.append(f"line {node.lineno}: {text}: an attribute of {owner}.{rest[0]}; assign it to a declared "
                            "name first")

    # assignments from TensorRT expressions must land in declared names
    def targets_of(node):
        if isinstance(node, (ast.Assign,)):
            return node.targets, node.value
        if isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.NamedExpr)):
            return [node.target], node.value
        if isinstance(node, (ast.For, ast.comprehension)):
            return [node.target], node.iter
        if isinstance(node, ast.withitem) and node.optional_vars is not None:
            return [node.optional_vars], node.context_expr
        return [], None

    declared = set(decl.objects) | decl.plain | set(decl.module_names)
    for node in ast.walk(tree):
        targets, value = targets_of(node)
        if value is None or not _mentions_trt(value, decl):
            continue
        for target in targets:
            for t in (target.elts if isinstance(target, ast.Tuple) else [target]):
                if isinstance(t, ast.Name):
                    name = t.id
                elif isinstance(t, ast.Attribute) and _chain(t) and _chain(t)[0] == "self" and len(_chain(t)) == 2:
                    name = ".".join(_chain(t))
                else:
                    continue
                if name not in declared:
                    problems.append(f"line {getattr(node, 'lineno', getattr(value, 'lineno', 0))}: {name} is assigned "
                                    "from a TensorRT expression but declared in neither TRT_OBJECTS nor PLAIN_NAMES")

    # subclasses of TensorRT classes only override methods the base has
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                chain = _chain(base)
                if chain and chain[0] in decl.module_names and len(chain) == 2:
                    for item in node.body:
                        if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                            check("member", chain[1], item.name, item, f"{node.name}.{item.name}")
    return problems, uses


def _strip_args(node):
    """The callee part of a call chain (arguments dropped), to tell ``len(trt_thing)`` from ``trt_thing().x``."""
    if isinstance(node, ast.Call):
        return _strip_args(node.func)
    if isinstance(node, ast.Subscript):
        return _strip_args(node.value)
    return node


def _innermost(node, parents):
    p = parents.get(node)
    while p is not None:
        if isinstance(p, ast.FunctionDef):
            return p.name
        p = parents.get(p)
    return node.name if isinstance(node, ast.FunctionDef) else None


def _thin_declarations() -> Declarations:
    from maskrt.export import engine_trt

    return Declarations(engine_trt.TRT_MODULE_NAMES, engine_trt.TRT_OBJECTS, engine_trt.PLAIN_NAMES,
                        engine_trt.VERSION_GATED)


# -- the tests ---------------------------------------------------------------------------------------------------
def _imports_tensorrt(tree) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] in ("tensorrt", "tensorrt_lean") for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("tensorrt", "tensorrt_lean"):
            return True
    return False


def test_only_the_thin_module_touches_tensorrt():
    importing, using = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if _imports_tensorrt(tree):
            importing.append(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "trt":
                using.append(path)
                break
    assert importing == [THIN], f"tensorrt is imported outside engine_trt.py: {importing}"
    assert set(using) <= {THIN}, f"`trt.` names used outside engine_trt.py: {sorted(set(using) - {THIN})}"


def test_tensorrt_is_bound_to_declared_names_only():
    decl = _thin_declarations()
    tree = ast.parse(THIN.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "tensorrt":
                    assert alias.asname in decl.module_names, ast.unparse(node)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and \
                getattr(node.value.func, "id", None) == "import_tensorrt":
            for t in node.targets:
                assert ast.unparse(t) in decl.module_names, ast.unparse(node)


def test_every_tensorrt_name_used_exists_in_its_versions(surfaces):
    decl = _thin_declarations()
    problems, uses = check_source(THIN.read_text(encoding="utf-8"), decl, surfaces)
    assert not problems, "\n".join(problems)
    checked = {(owner, member) for _, owner, member in uses}
    # the heart of the build and the runtime are among the checked names (the walk found them)
    for expected in [("Builder", "build_serialized_network"), ("IExecutionContext", "execute_async_v3"),
                     ("IExecutionContext", "set_tensor_address"), ("Runtime", "deserialize_cuda_engine"),
                     ("OnnxParser", "parse_from_file"), ("BuilderFlag", "FP16"), ("IProfiler", "report_layer_time"),
                     ("IBuilderConfig", "set_timing_cache"), ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED")]:
        assert expected in checked, expected
    # the fp16 builder flag is checked against 10.16 only (it is gone in 11.1)
    fp16 = [vs for vs, owner, member in uses if (owner, member) == ("BuilderFlag", "FP16")]
    assert fp16 and all(vs == ("10.16",) for vs in fp16)
    assert not surfaces["11.1"].has_member("BuilderFlag", "FP16")


def test_declarations_are_consistent(surfaces):
    from maskrt.export import engine_trt

    decl = _thin_declarations()
    assert not set(decl.objects) & decl.plain
    for name, cls in decl.objects.items():
        for v, s in surfaces.items():
            assert cls in s.classes, f"{name}: class {cls} not in TensorRT {v}"
    source = THIN.read_text(encoding="utf-8")
    for name in decl.objects:
        assert f"{name}." in source or f"{name} =" in source, f"TRT_OBJECTS entry {name!r} is never used"
    body = source.split("VERSION_GATED = ", 1)[1]  # after the declarations
    stale = [n for n in sorted(decl.plain) if not re.search(r"(?<![\w.])" + re.escape(n) + r"\b", body)]
    assert not stale, f"PLAIN_NAMES entries never used: {stale}"
    tree = ast.parse(source)
    functions = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    for fn, majors in decl.gated.items():
        assert fn in functions, f"VERSION_GATED names {fn}, which is not a function in engine_trt.py"
        first = functions[fn].body[0]
        assert isinstance(first, ast.Expr) and ast.unparse(first.value) == f"_gate(trt, {fn!r})", \
            f"{fn} must begin with _gate(trt, {fn!r})"
        assert set(majors) <= {s.major for s in surfaces.values()}
    assert engine_trt.VERSION_GATED is decl.gated or engine_trt.VERSION_GATED == decl.gated


def test_planner_flags_exist_in_each_version(surfaces):
    """Flags the planner can ask for (every precision route) exist in the surface of the version it plans for."""
    from maskrt.export.engine import BuildOptions, OnnxInfo, plan_build

    for v, s in surfaces.items():
        for onnx_precision in ("fp32", "fp16"):
            for wanted in (None, "fp16", "fp32"):
                info = OnnxInfo("m.onnx", {"images": {"dtype": "uint8", "shape": [None, 3, 64, 64]}}, {},
                                precision=onnx_precision)
                plan = plan_build(info, BuildOptions(precision=wanted), f"{v}.0")
                for flag in plan.builder_flags:
                    assert flag in s.enums["BuilderFlag"], (v, flag)
                for flag in plan.network_flags:
                    assert flag in s.enums["NetworkDefinitionCreationFlag"], (v, flag)


# -- the checker can fail ------------------------------------------------------------------------------------------
DECL = Declarations(("trt",), {"builder": "Builder", "config": "IBuilderConfig", "self._engine": "ICudaEngine"},
                    {"self", "n"}, {"_fp16": (10,)})


def _problems(surfaces, source):
    return check_source(textwrap.dedent(source), DECL, surfaces)[0]


def test_checker_flags_a_name_gone_in_11(surfaces):
    problems = _problems(surfaces, """
        def f(trt, config):
            config.set_flag(trt.BuilderFlag.INT8)
    """)
    assert any("BuilderFlag.INT8 is not in TensorRT 11.1" in p for p in problems)
    assert not any("10.16" in p for p in problems)


def test_checker_flags_a_method_gone_in_11(surfaces):
    problems = _problems(surfaces, """
        def f(builder):
            return builder.platform_has_fast_fp16
    """)
    assert any("Builder.platform_has_fast_fp16 is not in TensorRT 11.1" in p for p in problems)


def test_checker_flags_a_made_up_member(surfaces):
    problems = _problems(surfaces, """
        class R:
            def f(self):
                return self._engine.get_binding_index("images")
    """)
    assert sum("get_binding_index" in p for p in problems) == 2


def test_checker_flags_undeclared_names_and_chained_values(surfaces):
    problems = _problems(surfaces, """
        def f(trt, logger):
            net = trt.Builder(logger)
            trt.Builder(logger).create_network(0)
            return net
    """)
    assert any("net is assigned from a TensorRT expression" in p for p in problems)
    assert any("attribute of an undeclared TensorRT value" in p for p in problems)
    problems = _problems(surfaces, """
        def f(ctx):
            ctx.execute_async_v3(0)
    """)
    assert any("name 'ctx' is not declared" in p for p in problems)


def test_checker_respects_version_gates(surfaces):
    gated = _problems(surfaces, """
        def _fp16(trt, config):
            config.set_flag(trt.BuilderFlag.FP16)
    """)
    assert gated == []
    ungated = _problems(surfaces, """
        def other(trt, config):
            config.set_flag(trt.BuilderFlag.FP16)
    """)
    assert any("BuilderFlag.FP16 is not in TensorRT 11.1" in p for p in ungated)


def test_checker_flags_an_override_that_is_not_in_the_base(surfaces):
    problems = _problems(surfaces, """
        def f(trt):
            class P(trt.IProfiler):
                def report_layer_times(self, name, ms):
                    pass
    """)
    assert any("IProfiler.report_layer_times" in p for p in problems)
