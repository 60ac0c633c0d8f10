"""The build plan: options -> flags, profiles and precision route for TensorRT 10.16 and 11.1 (no TensorRT)."""

from __future__ import annotations

import pytest

from maskrt.backends.trt.plan import (
    BuildOptions,
    OnnxInfo,
    inspect_onnx,
    parse_version,
    parser_error_lines,
    plan_build,
    version_rules,
)
from maskrt.core.errors import MaskrtError
from maskrt.core.parsing import parse_memory as parse_workspace
from maskrt.plugins.library import load_shared_library, tensorrt_plugin_library
from tests.backends.engine_fixtures import tiny_onnx

V10, V11 = "10.16.0.72", "11.1.0.106"


def info(precision="fp32", batch=None, plugin_nodes=0, name="m.onnx", extra_dynamic=False):
    shape = [batch, 3, 32, 48]
    if extra_dynamic:
        shape[2] = None
    return OnnxInfo(name, {"images": {"dtype": "uint8", "shape": shape}},
                    {"boxes": {"dtype": "float32", "shape": [batch, 100, 4]}}, precision=precision,
                    plugin_nodes=plugin_nodes)


# -- workspace -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [("4G", 4 * 2**30), ("512M", 512 * 2**20), ("1GiB", 2**30),
                                            ("1073741824", 2**30), ("1.5g", 3 * 2**29), ("64 MiB", 64 * 2**20),
                                            ("2KB", 2048), (4096, 4096), ("1T", 2**40)])
def test_parse_workspace(text, expected):
    assert parse_workspace(text) == expected


@pytest.mark.parametrize("text", ["4X", "", "G", "-1G", "4 G B", "0", "0M", "four"])
def test_parse_workspace_refuses_with_the_accepted_forms(text):
    with pytest.raises(MaskrtError) as e:
        parse_workspace(text)
    msg = str(e.value)
    assert "\n" not in msg and "--workspace" in msg
    assert ("K, M, G, T" in msg) or ("more than 0" in msg)


# -- versions ------------------------------------------------------------------------------------------------------
def test_version_rules_decide_per_major():
    r10, r11 = version_rules(V10), version_rules(V11)
    assert (r10.major, r10.fp16_builder_flag, r10.strongly_typed_flag, r10.always_strongly_typed) == (10, True, True, False)
    assert (r11.major, r11.fp16_builder_flag, r11.strongly_typed_flag, r11.always_strongly_typed) == (11, False, False, True)
    assert r10.note is None and r11.note is None
    assert "newer" in version_rules("12.0.1").note
    with pytest.raises(MaskrtError, match="too old"):
        version_rules("8.6.1")
    assert parse_version("10.16.0.72") == (10, 16, 0, 72)
    assert parse_version("11.1.0.post1") == (11, 1, 0)


# -- precision routes ----------------------------------------------------------------------------------------------
def test_fp32_onnx_fp32_engine():
    p10 = plan_build(info(), BuildOptions(), V10)
    assert p10.ok and p10.precision == "fp32" and p10.precision_route == "fp32"
    assert p10.builder_flags == () and p10.network_flags == () and not p10.strongly_typed
    p11 = plan_build(info(), BuildOptions(), V11)
    assert p11.ok and p11.builder_flags == () and p11.network_flags == () and p11.strongly_typed


def test_fp16_flag_on_fp32_onnx_uses_the_builder_flag_on_10():
    plan = plan_build(info(), BuildOptions(precision="fp16"), V10)
    assert plan.ok, plan.errors
    assert plan.precision == "fp16" and plan.precision_route == "builder-flag"
    assert plan.builder_flags == ("FP16",) and plan.network_flags == () and not plan.strongly_typed
    assert any("builder flag" in n for n in plan.notes)


def test_fp16_flag_on_fp32_onnx_is_refused_on_11_with_the_export_command():
    plan = plan_build(info(), BuildOptions(precision="fp16"), V11)
    assert not plan.ok
    assert "strongly typed" in plan.errors[0] and "maskrt export --precision fp16" in plan.errors[0]
    assert plan.builder_flags == ()
    with pytest.raises(MaskrtError, match="export --precision fp16"):
        plan.raise_errors()


@pytest.mark.parametrize("version, network_flags", [(V10, ("STRONGLY_TYPED",)), (V11, ())])
@pytest.mark.parametrize("asked", [None, "fp16"])
def test_fp16_onnx_builds_strongly_typed(version, network_flags, asked):
    plan = plan_build(info("fp16"), BuildOptions(precision=asked), version)
    assert plan.ok, plan.errors
    assert plan.precision == "fp16" and plan.precision_route == "onnx-types" and plan.strongly_typed
    assert plan.network_flags == network_flags and plan.builder_flags == ()


@pytest.mark.parametrize("version, network_flags", [(V10, ("STRONGLY_TYPED",)), (V11, ())])
def test_qdq_onnx_builds_strongly_typed_without_a_precision_flag(version, network_flags):
    plan = plan_build(info("int8"), BuildOptions(), version)
    assert plan.ok, plan.errors
    assert plan.precision == "int8" and plan.precision_route == "onnx-types" and plan.strongly_typed
    assert plan.network_flags == network_flags and plan.builder_flags == ()  # no INT8 (nor FP16) builder flag


@pytest.mark.parametrize("asked", ["fp16", "fp32"])
def test_a_precision_asked_of_a_qdq_onnx_is_refused(asked):
    for version in (V10, V11):
        plan = plan_build(info("int8"), BuildOptions(precision=asked), version)
        assert not plan.ok and "int8 export" in plan.errors[0] and f"--precision {asked}" in plan.errors[0]


def test_fp32_asked_of_an_fp16_onnx_is_refused():
    plan = plan_build(info("fp16"), BuildOptions(precision="fp32"), V10)
    assert not plan.ok and "fp16 export" in plan.errors[0]


def test_old_tensorrt_is_an_error_and_new_a_note():
    assert "too old" in plan_build(info(), BuildOptions(), "8.6.1").errors[0]
    newer = plan_build(info(), BuildOptions(), "12.0.0")
    assert newer.ok and newer.strongly_typed and any("newer" in n for n in newer.notes)


# -- profiles ------------------------------------------------------------------------------------------------------
def test_dynamic_batch_default_profile():
    plan = plan_build(info(batch=None), BuildOptions(), V11)
    assert plan.profiles == [{"images": ((1, 3, 32, 48), (1, 3, 32, 48), (8, 3, 32, 48))}]


def test_dynamic_batch_profile_from_options():
    plan = plan_build(info(batch=None), BuildOptions(min_batch=2, opt_batch=4, max_batch=16), V10)
    assert plan.ok
    assert plan.profiles == [{"images": ((2, 3, 32, 48), (4, 3, 32, 48), (16, 3, 32, 48))}]
    only_max = plan_build(info(batch=None), BuildOptions(max_batch=4), V10)
    assert only_max.profiles[0]["images"][2][0] == 4 and only_max.profiles[0]["images"][1][0] == 1
    big_opt = plan_build(info(batch=None), BuildOptions(opt_batch=12), V10)
    assert [s[0] for s in big_opt.profiles[0]["images"]] == [1, 12, 12]


@pytest.mark.parametrize("options, fragment", [
    (BuildOptions(min_batch=4, max_batch=2), "--min-batch 4 is larger than --max-batch 2"),
    (BuildOptions(min_batch=2, opt_batch=1, max_batch=4), "--opt-batch 1 must lie between"),
    (BuildOptions(min_batch=0), "--min-batch must be a positive integer"),
])
def test_bad_batch_options(options, fragment):
    plan = plan_build(info(batch=None), options, V10)
    assert not plan.ok and fragment in plan.errors[0]


def test_max_batch_defaults_to_at_least_min_batch():
    plan = plan_build(info(batch=None), BuildOptions(min_batch=16), V10)
    assert plan.ok and [s[0] for s in plan.profiles[0]["images"]] == [16, 16, 16]


def test_fixed_batch_ignores_batch_options_with_a_note():
    plan = plan_build(info(batch=2), BuildOptions(min_batch=1, max_batch=8), V11)
    assert plan.ok and plan.profiles == []
    assert any("fixed batch of 2" in n and "ignored" in n for n in plan.notes)
    assert plan_build(info(batch=2), BuildOptions(), V11).notes == []


def test_dynamic_height_without_bounds_is_refused():
    plan = plan_build(info(batch=None, extra_dynamic=True), BuildOptions(), V10)
    assert not plan.ok and "--min-shape, --opt-shape and --max-shape" in plan.errors[0]


def test_other_unbounded_dynamic_inputs_are_refused():
    i = info(batch=None)
    i.inputs["extra"] = {"dtype": "float32", "shape": [None, None]}
    plan = plan_build(i, BuildOptions(), V10)
    assert not plan.ok and "'extra'" in plan.errors[0] and "cannot bound" in plan.errors[0]


def dynamic_size_info(batch=None, bounds=((64, 64), (320, 480), (800, 1344))):
    import json
    i = OnnxInfo("m.onnx", {"images": {"dtype": "uint8", "shape": [batch, 3, None, None]},
                            "image_sizes": {"dtype": "int64", "shape": [batch, 2]}},
                 {"boxes": {"dtype": "float32", "shape": [batch, 100, 4]}})
    if bounds:
        i.metadata = {k: json.dumps(list(v)) for k, v in zip(("min_input_size", "input_size", "max_input_size"), bounds)}
    return i


def test_dynamic_size_profile_comes_from_the_export_bounds():
    plan = plan_build(dynamic_size_info(), BuildOptions(max_batch=4), V10)
    assert plan.ok, plan.errors
    images = plan.profiles[0]["images"]
    assert images == ((1, 3, 64, 64), (1, 3, 320, 480), (4, 3, 800, 1344))
    assert plan.profiles[0]["image_sizes"] == ((1, 2), (1, 2), (4, 2))
    assert plan.notes[0].startswith("dynamic batch and size: one optimization profile")


def test_dynamic_size_profile_options_override_and_are_checked():
    plan = plan_build(dynamic_size_info(batch=2), BuildOptions(min_shape=(128, 128), opt_shape=(480, 640),
                                                                max_shape=(640, 960)), V11)
    assert plan.ok, plan.errors
    assert plan.profiles[0]["images"] == ((2, 3, 128, 128), (2, 3, 480, 640), (2, 3, 640, 960))
    assert plan.notes[0].startswith("dynamic size: one optimization profile, batch 2")
    bad = plan_build(dynamic_size_info(), BuildOptions(min_shape=(700, 700)), V10)
    assert not bad.ok and "min <= opt <= max" in bad.errors[0]
    unbounded = plan_build(dynamic_size_info(bounds=None), BuildOptions(), V10)
    assert not unbounded.ok and "--min-shape" in unbounded.errors[0]


# -- other options -------------------------------------------------------------------------------------------------
def test_workspace_level_cache_and_verbosity_reach_the_plan(tmp_path):
    options = BuildOptions(workspace="2G", optimization_level=5, timing_cache=str(tmp_path / "t.cache"), verbose=True)
    plan = plan_build(info(), options, V10)
    assert plan.ok
    assert plan.workspace_bytes == 2 * 2**30 and plan.optimization_level == 5 and plan.verbose
    assert plan.timing_cache == str(tmp_path / "t.cache") and plan.profiling_verbosity == "DETAILED"
    assert not any("timing-cache" in n for n in plan.notes)


def test_timing_cache_at_level_0_is_noted(tmp_path):
    # NvInfer.h (11.1): optimization level 0 does not respect a timing cache.
    plan = plan_build(info(), BuildOptions(optimization_level=0, timing_cache=str(tmp_path / "t.cache")), V10)
    assert plan.ok and any("--timing-cache is not used at --optimization-level 0" in n for n in plan.notes)


@pytest.mark.parametrize("options, fragment", [
    (BuildOptions(optimization_level=6), "--optimization-level must be 0 to 5"),
    (BuildOptions(workspace="lots"), "--workspace must be"),
    (BuildOptions(precision="int8"), "maskrt export --precision int8"),
    (BuildOptions(timing_cache="/no/such/folder/t.cache"), "does not exist"),
])
def test_bad_options(options, fragment):
    plan = plan_build(info(), options, V10)
    assert not plan.ok and fragment in plan.errors[0]
    with pytest.raises(MaskrtError, match=fragment.replace("-", "\\-")):
        options.raise_errors()


def test_plugin_nodes_need_a_library():
    plan = plan_build(info(plugin_nodes=2), BuildOptions(), V10)
    assert not plan.ok and "2 maskrt plugin node(s)" in plan.errors[0] and "maskrt plugins build" in plan.errors[0]
    plan = plan_build(info(plugin_nodes=2), BuildOptions(plugins="/x/libmaskrt_trt_plugins.so"), V10)
    assert plan.ok and plan.plugin_library == "/x/libmaskrt_trt_plugins.so"
    plan = plan_build(info(), BuildOptions(plugins="/x/lib.so"), V10)
    assert plan.ok and any("no maskrt plugin nodes" in n for n in plan.notes)


def test_plan_is_pure_and_serialisable():
    a = plan_build(info(batch=None), BuildOptions(precision="fp16", max_batch=4), V10)
    b = plan_build(info(batch=None), BuildOptions(precision="fp16", max_batch=4), V10)
    assert a == b
    d = a.to_dict()
    assert d["profiles"] == [{"images": [[1, 3, 32, 48], [1, 3, 32, 48], [4, 3, 32, 48]]}]
    assert d["builder_flags"] == ("FP16",) and d["trt_version"] == V10


# -- the ONNX, plugins, parser errors --------------------------------------------------------------------------------
def test_inspect_onnx(tmp_path):
    i = inspect_onnx(tiny_onnx(tmp_path / "m.onnx", plugin_nodes=2))
    assert i.inputs == {"images": {"dtype": "uint8", "shape": [None, 3, 32, 48]}}
    assert i.precision == "fp32" and i.plugin_nodes == 2 and i.metadata["preset"] == "tiny"
    assert len(i.sha256) == 64 and i.size_bytes > 0
    h = inspect_onnx(tiny_onnx(tmp_path / "h.onnx", batch=2, precision="fp16", metadata=False))
    assert h.precision == "fp16" and h.inputs["images"]["shape"][0] == 2 and h.metadata == {}


def test_inspect_onnx_sees_qdq_nodes_as_int8(tmp_path):
    import onnx
    from onnx import helper, numpy_helper

    path = tiny_onnx(tmp_path / "q.onnx")
    proto = onnx.load(path)
    g = proto.graph
    scale = numpy_helper.from_array(__import__("numpy").array(0.1, dtype="float32"), "s")
    g.initializer.append(scale)
    out = g.node[-1]  # Identity(scaled) -> out: route it through a Q/DQ pair
    g.node.insert(len(g.node) - 1, helper.make_node("QuantizeLinear", ["scaled", "s"], ["q"]))
    g.node.insert(len(g.node) - 1, helper.make_node("DequantizeLinear", ["q", "s"], ["dq"]))
    out.input[0] = "dq"
    onnx.save(proto, path)
    assert inspect_onnx(path).precision == "int8"  # metadata says fp32; the Q/DQ nodes decide


def test_inspect_onnx_bad_files(tmp_path):
    with pytest.raises(MaskrtError, match="model not found"):
        inspect_onnx(str(tmp_path / "missing.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(MaskrtError, match="not a readable ONNX model"):
        inspect_onnx(str(bad))
    good = tiny_onnx(tmp_path / "t.onnx")
    data = open(good, "rb").read()
    (tmp_path / "trunc.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(MaskrtError, match="not a readable ONNX model"):
        inspect_onnx(str(tmp_path / "trunc.onnx"))


def test_tensorrt_plugin_library_lookup(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MASKRT_PLUGIN_PATH", str(tmp_path / "plugins"))
    who = "m.onnx has 1 maskrt plugin node(s)"
    assert tensorrt_plugin_library(None, needed=False) is None
    with pytest.raises(MaskrtError, match="no such file"):
        tensorrt_plugin_library(str(tmp_path / "nope.so"), needed=True, who=who)
    with pytest.raises(MaskrtError, match="1 maskrt plugin node.*maskrt plugins build"):
        tensorrt_plugin_library(None, needed=True, who=who)
    (tmp_path / "plugins").mkdir()
    lib = tmp_path / "plugins" / "libmaskrt_trt_plugins.so"
    lib.write_bytes(b"x")
    assert tensorrt_plugin_library(None, needed=True, who=who) == str(lib)
    assert tensorrt_plugin_library(str(lib), needed=False) == str(lib)


def test_a_plugin_library_that_does_not_load(tmp_path):
    bad = tmp_path / "libbroken.so"
    bad.write_bytes(b"this is not an ELF file")
    with pytest.raises(MaskrtError) as e:
        load_shared_library(str(bad))
    assert str(e.value).startswith(f"cannot load plugin library {bad}") and "\n" not in str(e.value)
    with pytest.raises(MaskrtError, match="no such file"):
        load_shared_library(str(tmp_path / "missing.so"))


def test_parser_error_lines_name_the_node():
    lines = parser_error_lines([
        {"node_name": "/roi_heads/RoiAlign", "node": 12, "operator": "RoiAlign", "desc": "unsupported\n  mode"},
        {"node_name": "", "node": 3, "operator": "", "desc": "bad"},
        {"node_name": "", "node": -1, "operator": "", "desc": "graph level"},
    ])
    assert lines == ["node /roi_heads/RoiAlign (RoiAlign): unsupported mode", "node #3: bad", "node (graph): graph level"]
