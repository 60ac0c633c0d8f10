"""Every TensorRT name maskrt uses exists in the TensorRT releases it supports (10.16 and 11.1).

TensorRT cannot be installed here, so the names are checked against the API surfaces in
``shared/tensorrt-api/tensorrt-<version>.json`` (lists of the Python bindings' classes, members and enums).
The list of used names is derived from the syntax tree of maskrt's source as it is written, not by hand:

* only :mod:`maskrt.backends.trt.api` may import tensorrt or use a ``trt`` name, and the module is only ever
  bound to ``trt`` (``self._trt`` on a session);
* every attribute chain rooted at the tensorrt module (``trt.X``, ``trt.X.Y``) is checked;
* a variable, attribute or parameter that holds a TensorRT object carries its class as an annotation
  (``builder: trt.Builder = trt.Builder(logger)``, ``def f(trt, config: trt.IBuilderConfig)``); every attribute
  read or written on it is checked against that class (and its bases), in its function's scope;
* so that nothing slips past: every name assigned from an expression involving TensorRT must be annotated
  (with a TensorRT class or a plain type), an attribute may not be taken directly from a call or subscript on
  a TensorRT value, and a TensorRT object passed to a function of the module must meet a parameter annotated
  with the same class;
* names inside functions decorated with ``@tensorrt_majors(...)`` are checked against those versions only (the
  decorator enforces it at run time).

The tests at the bottom feed the checker small sources that break each rule, so it is shown to fail.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "maskrt"
THIN = PACKAGE / "backends" / "trt" / "api.py"


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
MODULE_NAMES = ("trt", "self._trt")


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


def _target_name(node):
    """``x`` -> "x", ``self.x`` -> "self.x"; None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    chain = _chain(node)
    if chain and chain[0] == "self" and len(chain) == 2:
        return "self." + chain[1]
    return None


def _trt_class(annotation):
    """The TensorRT class an annotation names (``trt.X``, ``"trt.X"``, ``Optional[trt.X]``), else None."""
    if annotation is None:
        return None
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            annotation = ast.parse(annotation.value, mode="eval").body
        except SyntaxError:
            return None
    if isinstance(annotation, ast.Subscript):  # Optional[trt.X]
        return _trt_class(annotation.slice)
    chain = _chain(annotation)
    if chain and len(chain) == 2 and chain[0] == "trt":
        return chain[1]
    return None


class Scopes:
    """What the source declares: per function, its annotated names (TensorRT class or None for a plain type); the
    ``self.`` attributes annotated anywhere; the parameters of each module function; version gates."""

    def __init__(self, tree):
        self.parents = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        self.local: dict = {}  # function name -> {name: class or None}
        self.attributes: dict = {}  # "self.x" -> class or None
        self.params: dict = {}  # function name -> [(name, class or None)]
        self.gated: dict = {}  # function name -> majors
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                names = self.local.setdefault(node.name, {})
                params = []
                for arg in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
                    if arg.annotation is not None:
                        names[arg.arg] = _trt_class(arg.annotation)
                    params.append((arg.arg, _trt_class(arg.annotation)))
                self.params.setdefault(node.name, params)
                for deco in node.decorator_list:
                    if isinstance(deco, ast.Call) and getattr(deco.func, "id", None) == "tensorrt_majors":
                        self.gated[node.name] = tuple(a.value for a in deco.args)
            if isinstance(node, ast.AnnAssign):
                name = _target_name(node.target)
                cls = _trt_class(node.annotation)
                if name and name.startswith("self."):
                    self.attributes[name] = cls
                elif name:
                    self.local.setdefault(self.function(node), {})[name] = cls

    def function(self, node):
        p = self.parents.get(node)
        while p is not None:
            if isinstance(p, ast.FunctionDef):
                return p.name
            p = self.parents.get(p)
        return None

    def lookup(self, name, node):
        """(declared?, class or None) of ``name`` where ``node`` is."""
        if name.startswith("self."):
            return (name in self.attributes, self.attributes.get(name))
        names = self.local.get(self.function(node), {})
        return (name in names, names.get(name))


def _mentions_trt(expr, scopes: Scopes, at) -> bool:
    for node in ast.walk(expr):
        if isinstance(node, ast.Name) and (node.id in MODULE_NAMES or scopes.lookup(node.id, at)[1]):
            return True
        if isinstance(node, ast.Attribute):
            c = _chain(node)
            if c and len(c) >= 2 and (".".join(c[:2]) in MODULE_NAMES or scopes.lookup(".".join(c[:2]), at)[1]):
                return True
    return False


def _strip_args(node):
    """The callee part of a call chain (arguments dropped), to tell ``len(trt_thing)`` from ``trt_thing().x``."""
    if isinstance(node, ast.Call):
        return _strip_args(node.func)
    if isinstance(node, ast.Subscript):
        return _strip_args(node.value)
    return node


def check_source(source: str, surfaces: dict) -> tuple[list[str], list[tuple]]:
    """Problems, and the (versions, owner, member) uses that were checked."""
    tree = ast.parse(source)
    scopes = Scopes(tree)
    problems, uses = [], []
    all_versions = tuple(surfaces)

    def versions_for(node):
        majors = scopes.gated.get(scopes.function(node))
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

    # annotations name classes that exist
    for node in ast.walk(tree):
        ann = None
        if isinstance(node, (ast.AnnAssign, ast.arg)):
            ann = node.annotation
        cls = _trt_class(ann)
        if cls is not None:
            for v in versions_for(node):
                if cls not in surfaces[v].classes and cls not in surfaces[v].enums:
                    problems.append(f"line {node.lineno}: annotation trt.{cls} is not a class in TensorRT {v}")

    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        parent = scopes.parents.get(node)
        if isinstance(parent, ast.Attribute) and parent.value is node:
            continue  # handled with the whole chain
        if isinstance(parent, ast.AnnAssign) and parent.annotation is node:
            continue  # an annotation, not a use
        if isinstance(parent, ast.Subscript) and isinstance(scopes.parents.get(parent), ast.AnnAssign) \
                and scopes.parents[parent].annotation is parent:
            continue
        if isinstance(parent, ast.arg):
            continue
        chain = _chain(node)
        text = ast.unparse(node)
        if chain is None:
            if _mentions_trt(_strip_args(node.value), scopes, node):
                problems.append(f"line {node.lineno}: {text}: an attribute of an unannotated TensorRT value; assign "
                                "it to an annotated name first")
            continue
        head2 = ".".join(chain[:2]) if len(chain) > 1 else None
        if chain[0] in MODULE_NAMES or head2 in MODULE_NAMES:
            rest = chain[1:] if chain[0] in MODULE_NAMES else chain[2:]
            if not rest:
                continue
            check("module", None, rest[0], node, text)
            if len(rest) == 2:
                owner = rest[0]
                if all(surfaces[v].module_has(owner) for v in versions_for(node)):
                    check("member", owner, rest[1], node, text)
            elif len(rest) > 2:
                problems.append(f"line {node.lineno}: {text}: chains deeper than tensorrt.X.Y are not checked; "
                                "assign the intermediate value to an annotated name")
            continue
        owner, rest = None, None
        if head2 is not None and head2.startswith("self."):
            owner, rest = scopes.lookup(head2, node)[1], chain[2:]
        if owner is None:
            owner, rest = scopes.lookup(chain[0], node)[1], chain[1:]
        if owner is None or not rest:
            continue
        check("member", owner, rest[0], node, text)
        if len(rest) > 1:
            problems.append(f"line {node.lineno}: {text}: an attribute of {owner}.{rest[0]}; assign it to an annotated "
                            "name first")

    # assignments from TensorRT expressions land in annotated names (Python cannot annotate a loop variable: a
    # loop over range() yields ints, and the variables of comprehensions are checked where their attributes are read)
    def targets_of(node):
        if isinstance(node, ast.Assign):
            return node.targets, node.value
        if isinstance(node, (ast.AugAssign, ast.NamedExpr)):
            return [node.target], node.value
        if isinstance(node, ast.For) and not (isinstance(node.iter, ast.Call)
                                              and getattr(node.iter.func, "id", None) == "range"):
            return [node.target], node.iter
        if isinstance(node, ast.withitem) and node.optional_vars is not None:
            return [node.optional_vars], node.context_expr
        return [], None

    for node in ast.walk(tree):
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            for gen in node.generators:
                if not _mentions_trt(gen.iter, scopes, node):
                    continue
                bound = {t.id for t in ast.walk(gen.target) if isinstance(t, ast.Name)}
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Attribute) and _chain(inner) and _chain(inner)[0] in bound:
                        problems.append(f"line {inner.lineno}: {ast.unparse(inner)}: an attribute of a TensorRT value "
                                        "in a comprehension; loop over an annotated name instead")

    for node in ast.walk(tree):
        targets, value = targets_of(node)
        if value is None or not _mentions_trt(value, scopes, node):
            continue
        for target in targets:
            for t in (target.elts if isinstance(target, ast.Tuple) else [target]):
                name = _target_name(t)
                if name is None or name in MODULE_NAMES:
                    continue
                if not scopes.lookup(name, node)[0]:
                    problems.append(f"line {getattr(node, 'lineno', getattr(value, 'lineno', 0))}: {name} is assigned "
                                    "from a TensorRT expression but has no annotation")

    # TensorRT objects passed to the module's functions meet parameters annotated with their class
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.func.id not in scopes.params:
            continue
        params = scopes.params[node.func.id]
        pairs = list(zip(params, node.args))
        by_name = dict(params)
        pairs += [((k.arg, by_name.get(k.arg)), k.value) for k in node.keywords if k.arg in by_name]
        for (pname, pclass), arg in pairs:
            name = _target_name(arg)
            cls = scopes.lookup(name, node)[1] if name else None
            if cls is not None and pclass != cls:
                problems.append(f"line {node.lineno}: {node.func.id}({pname}=...) receives a trt.{cls} but its "
                                f"parameter is annotated {('trt.' + pclass) if pclass else 'without a TensorRT class'}")

    # subclasses of TensorRT classes only override methods the base has
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                chain = _chain(base)
                if chain and chain[0] in MODULE_NAMES and len(chain) == 2:
                    for item in node.body:
                        if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                            check("member", chain[1], item.name, item, f"{node.name}.{item.name}")
    return problems, uses


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
    assert importing == [THIN], f"tensorrt is imported outside api.py: {importing}"
    assert set(using) <= {THIN}, f"`trt.` names used outside api.py: {sorted(set(using) - {THIN})}"


def test_tensorrt_is_bound_to_trt_only():
    tree = ast.parse(THIN.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "tensorrt":
                    assert alias.asname == "trt", ast.unparse(node)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and \
                getattr(node.value.func, "id", None) == "import_tensorrt":
            for t in node.targets:
                assert ast.unparse(t) in MODULE_NAMES, ast.unparse(node)


def test_every_tensorrt_name_used_exists_in_its_versions(surfaces):
    problems, uses = check_source(THIN.read_text(encoding="utf-8"), surfaces)
    assert not problems, "\n".join(problems)
    checked = {(owner, member) for _, owner, member in uses}
    # the heart of the build and the runtime are among the checked names (the walk found them)
    for expected in [("Builder", "build_serialized_network"), ("IExecutionContext", "execute_async_v3"),
                     ("IExecutionContext", "set_tensor_address"), ("Runtime", "deserialize_cuda_engine"),
                     ("OnnxParser", "parse_from_file"), ("BuilderFlag", "FP16"), ("IProfiler", "report_layer_time"),
                     ("IBuilderConfig", "set_timing_cache"), ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED"),
                     ("IPluginRegistry", "load_library"), ("ParserError", "desc"), ("ICudaEngine", "get_tensor_name")]:
        assert expected in checked, expected
    # the fp16 builder flag is checked against 10.16 only (it is gone in 11.1)
    fp16 = [vs for vs, owner, member in uses if (owner, member) == ("BuilderFlag", "FP16")]
    assert fp16 and all(vs == ("10.16",) for vs in fp16)
    assert not surfaces["11.1"].has_member("BuilderFlag", "FP16")


def test_version_gates_are_enforced_at_run_time(surfaces):
    from maskrt.backends.trt import api

    scopes = Scopes(ast.parse(THIN.read_text(encoding="utf-8")))
    assert scopes.gated, "no version-gated function found"
    for name, majors in scopes.gated.items():
        function = getattr(api, name)
        assert function.tensorrt_majors == majors
        assert set(majors) <= {s.major for s in surfaces.values()}


def test_planner_flags_exist_in_each_version(surfaces):
    """Flags the planner can ask for (every precision route) exist in the surface of the version it plans for."""
    from maskrt.backends.trt.plan import BuildOptions, OnnxInfo, plan_build

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
def _problems(surfaces, source):
    return check_source(textwrap.dedent(source), surfaces)[0]


def test_checker_flags_a_name_gone_in_11(surfaces):
    problems = _problems(surfaces, """
        def f(trt, config: trt.IBuilderConfig):
            config.set_flag(trt.BuilderFlag.INT8)
    """)
    assert any("BuilderFlag.INT8 is not in TensorRT 11.1" in p for p in problems)
    assert not any("10.16" in p for p in problems)


def test_checker_flags_a_method_gone_in_11(surfaces):
    problems = _problems(surfaces, """
        def f(trt, builder: trt.Builder):
            return builder.platform_has_fast_fp16
    """)
    assert any("Builder.platform_has_fast_fp16 is not in TensorRT 11.1" in p for p in problems)


def test_checker_flags_a_made_up_member(surfaces):
    problems = _problems(surfaces, """
        class R:
            def __init__(self, trt, data):
                self._engine: trt.ICudaEngine = trt.Runtime(None).deserialize_cuda_engine(data)

            def f(self):
                return self._engine.get_binding_index("images")
    """)
    assert sum("get_binding_index" in p for p in problems) == 2


def test_checker_flags_unannotated_names_and_chained_values(surfaces):
    problems = _problems(surfaces, """
        def f(trt, logger):
            net = trt.Builder(logger)
            trt.Builder(logger).create_network(0)
            return net
    """)
    assert any("net is assigned from a TensorRT expression but has no annotation" in p for p in problems)
    assert any("attribute of an unannotated TensorRT value" in p for p in problems)
    problems = _problems(surfaces, """
        def f(trt, logger):
            builder: trt.Bulider = trt.Builder(logger)
    """)
    assert any("trt.Bulider is not a class" in p for p in problems)


def test_checker_follows_objects_into_functions(surfaces):
    problems = _problems(surfaces, """
        def use(trt, parser):
            return parser.num_errors

        def f(trt, network: trt.INetworkDefinition, logger: trt.Logger):
            parser: trt.OnnxParser = trt.OnnxParser(network, logger)
            return use(trt, parser)
    """)
    assert any("use(parser=...) receives a trt.OnnxParser" in p for p in problems)


def test_checker_respects_version_gates(surfaces):
    gated = _problems(surfaces, """
        @tensorrt_majors(10)
        def _fp16(trt, config: trt.IBuilderConfig):
            config.set_flag(trt.BuilderFlag.FP16)
    """)
    assert gated == []
    ungated = _problems(surfaces, """
        def other(trt, config: trt.IBuilderConfig):
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
