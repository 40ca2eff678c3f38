"""The ComfyUI node: schema, the standard/taylor toggle, and loading the custom-node
folder's __init__.py with and without the library and the V3 API."""

import asyncio
import copy
import importlib.util
import logging
import os
import subprocess
import sys

import pytest
import torch

import taylor_attention
from fake_comfy import FakeModelPatcher, call_attention
from taylor_attention import comfy_node, override
from taylor_attention.dispatch import wrap_attn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))

# The list: every parameter with its original name and default (plus the
# local-exact hybrid's three, after sub_head_blocks).
EXPECTED_DEFAULTS = {
    "P": 4, "min_tokens": 100, "max_feature_dim_R": 370000, "sub_head_blocks": 4,
    "window_radius": 4, "window_text_keys": True, "window_text_queries": True,
    "qk_normalize": False, "scale_mul": 1.0, "block_size_q": 32, "block_size_k": 16, "eps": 1e-6,
    "fallback_on_negative": True, "allow_cross_attention": True, "max_head_dim": 128,
    "force_fp32": False, "memory_reserve": True, "memory_reserve_factor": 1.1,
    "memory_reserve_log": True, "early_probe": True, "probe_samples": 16, "denom_fp32": True,
    "quality_check": True, "quality_check_samples": 16, "quality_check_log_every": 1,
    "log_shapes": True, "log_fallbacks": True,
}


def schema():
    return comfy_node.TaylorAttentionBackend.define_schema()


def test_schema_identity():
    s = schema()
    assert s.node_id == "TaylorAttentionBackend"
    assert s.display_name == "Taylor Attention Backend"
    assert s.category == "advanced/attention"
    assert s.is_experimental is True
    assert [o.io_type for o in s.outputs] == ["MODEL"]
    assert s.inputs[0].id == "model" and s.inputs[0].io_type == "MODEL"
    backend = s.inputs[1]
    assert backend.id == "backend" and backend.io_type == "COMBO"
    assert backend.options == ["standard", "taylor"] and backend.default == "taylor"


def test_schema_lists_every_parameter_with_default():
    inputs = {i.id: i for i in schema().inputs[2:]}
    assert list(inputs) == list(EXPECTED_DEFAULTS)
    for name, default in EXPECTED_DEFAULTS.items():
        inp = inputs[name]
        assert inp.default == default, name
        assert type(inp.default) is type(default), name
        expected_type = {bool: "BOOLEAN", int: "INT", float: "FLOAT"}[type(default)]
        assert inp.io_type == expected_type, name
        assert inp.tooltip and len(inp.tooltip) > 20, name
        if expected_type != "BOOLEAN":
            assert inp.min <= default <= inp.max, name
            assert inp.step > 0


def test_schema_ranges_are_sensible():
    inputs = {i.id: i for i in schema().inputs[2:]}
    assert inputs["P"].min == 1 and inputs["P"].max >= 5
    assert inputs["sub_head_blocks"].min == 1
    assert inputs["eps"].min > 0
    assert inputs["memory_reserve_factor"].min >= 1.0
    assert inputs["quality_check_log_every"].min == 1
    assert inputs["max_feature_dim_R"].max >= 366145
    assert inputs["window_radius"].min == 0 and inputs["window_radius"].max == 64


def test_entrypoint_lists_node():
    ext = asyncio.run(comfy_node.comfy_entrypoint())
    nodes = asyncio.run(ext.get_node_list())
    assert nodes == [comfy_node.TaylorAttentionBackend]


def _execute(model, **kw):
    result = comfy_node.TaylorAttentionBackend.execute(model, **kw)
    assert len(result.args) == 1
    return result.args[0]


def test_taylor_installs_on_clone(lib):
    base = FakeModelPatcher()
    m = _execute(base, backend="taylor", P=3, sub_head_blocks=2, min_tokens=10)
    assert m is not base
    assert override.OVERRIDE_KEY not in base.model_options["transformer_options"]
    fn = m.model_options["transformer_options"][override.OVERRIDE_KEY]
    ov = fn.taylor_state
    assert isinstance(ov, taylor_attention.TaylorAttentionOverride)
    assert m.model_options["transformer_options"][override.CONFIG_KEY] is ov
    import inspect
    assert inspect.isfunction(fn)  # ComfyUI hands plain-function overrides plain tensors
    assert ov.config.P == 3 and ov.config.sub_head_blocks == 2 and ov.config.min_tokens == 10
    q = torch.randn(1, 2, 64, 32)
    out = call_attention(m, q, q, q, 2, skip_reshape=True)
    assert out.shape == (1, 64, 64) and ov.by_backend == {"taylor": 1}


def test_all_defaults_via_execute(lib):
    m = _execute(FakeModelPatcher(), **{"backend": "taylor", **EXPECTED_DEFAULTS})
    ov = m.model_options["transformer_options"][override.CONFIG_KEY]
    for name, default in EXPECTED_DEFAULTS.items():
        assert getattr(ov.config, name) == default


def test_standard_removes_and_restores():
    def previous(func, *a, **k):
        return func(*a, **k)

    base = FakeModelPatcher({"transformer_options": {override.OVERRIDE_KEY: previous, "other": 1}})
    tay = _execute(base, backend="taylor")
    assert tay.model_options["transformer_options"][override.OVERRIDE_KEY].taylor_state.previous is previous
    std = _execute(tay, backend="standard")
    opts = std.model_options["transformer_options"]
    assert opts[override.OVERRIDE_KEY] is previous and opts["other"] == 1
    assert override.CONFIG_KEY not in opts
    # without a displaced override the key is popped, never set to None
    std2 = _execute(_execute(FakeModelPatcher(), backend="taylor"), backend="standard")
    assert override.OVERRIDE_KEY not in std2.model_options["transformer_options"]
    # standard on a model that never had ours leaves a foreign override alone
    std3 = _execute(base, backend="standard")
    assert std3.model_options["transformer_options"][override.OVERRIDE_KEY] is previous
    # and standard tolerates a model without transformer_options
    _execute(FakeModelPatcher({}), backend="standard")


def test_standard_model_runs_standard_attention(lib):
    calls = []

    @wrap_attn
    def backend(q, k, v, heads, **kw):
        calls.append(1)
        return q

    m = _execute(_execute(FakeModelPatcher(), backend="taylor"), backend="standard")
    q = torch.randn(1, 2, 128, 32)
    call_attention(m, q, q, q, 2, backend=backend, skip_reshape=True)
    assert calls == [1]


def test_toggle_back_and_forth_keeps_dispatch_working(lib):
    m = FakeModelPatcher()
    for backend in ("taylor", "standard", "taylor", "taylor", "standard"):
        m = _execute(m, backend=backend)
        if backend == "taylor":  # taylor over taylor replaces, never chains Taylor into Taylor
            assert m.model_options["transformer_options"][override.CONFIG_KEY].previous is None
        q = torch.randn(1, 2, 128, 32)
        out = call_attention(m, q, q, q, 2, skip_reshape=True)
        assert out.shape == (1, 128, 64)
    assert override.OVERRIDE_KEY not in m.model_options["transformer_options"]


def test_clone_after_node_shares_state(lib):
    m = _execute(FakeModelPatcher(), backend="taylor")
    later = m.clone()  # e.g. a LoRA loader after our node
    for key in (override.OVERRIDE_KEY, override.CONFIG_KEY):
        assert later.model_options["transformer_options"][key] is m.model_options["transformer_options"][key]
        assert copy.deepcopy(m.model_options)["transformer_options"][key] is \
            m.model_options["transformer_options"][key]


def test_bad_backend_value():
    with pytest.raises(ValueError):
        comfy_node.apply_backend(FakeModelPatcher(), backend="fast")


# ------------------------------------------------------------------ the custom-node folder
def load_root_package(name="taylor_attention_custom_node"):
    path = os.path.join(ROOT, "__init__.py")
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=[ROOT])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_root_package_exports_v3_entrypoint(lib):
    module = load_root_package()
    assert not hasattr(module, "NODE_CLASS_MAPPINGS")  # V1 would win over V3
    ext = asyncio.run(module.comfy_entrypoint())
    nodes = asyncio.run(ext.get_node_list())
    assert [n.define_schema().node_id for n in nodes] == ["TaylorAttentionBackend"]


def test_root_package_without_library(no_library, caplog):
    comfy_node._availability_logged[0] = False
    with caplog.at_level(logging.WARNING, logger="taylor_attention"):
        module = load_root_package("taylor_attention_custom_node_nolib")
        ext = asyncio.run(module.comfy_entrypoint())
        node = asyncio.run(ext.get_node_list())[0]
        m = node.execute(FakeModelPatcher(), backend="taylor").args[0]
    warnings = [r.getMessage() for r in caplog.records if "library unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "install.py" in warnings[0]
    q = torch.randn(1, 2, 128, 32)
    out = call_attention(m, q, q, q, 2, skip_reshape=True)  # falls back to standard attention
    ref = torch.nn.functional.scaled_dot_product_attention(q, q, q).transpose(1, 2).reshape(1, 128, 64)
    assert torch.allclose(out, ref)
    ov = m.model_options["transformer_options"][override.CONFIG_KEY]
    assert ov.by_reason == {"library_unavailable": 1}


def test_root_package_without_v3_api(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "comfy_api", None)
    monkeypatch.setitem(sys.modules, "comfy_api.latest", None)
    monkeypatch.delitem(sys.modules, "taylor_attention.comfy_node")
    monkeypatch.delattr(taylor_attention, "comfy_node")
    with caplog.at_level(logging.WARNING, logger="taylor_attention"):
        module = load_root_package("taylor_attention_custom_node_old")
    assert not hasattr(module, "comfy_entrypoint") and module.__all__ == []
    assert sum("no V3 node API" in r.getMessage() for r in caplog.records) == 1
    reloaded = sys.modules["taylor_attention.comfy_node"]
    assert reloaded.COMFY_API_AVAILABLE is False
    # the node's logic still works without the API
    m = reloaded.apply_backend(FakeModelPatcher(), "taylor")
    assert override.OVERRIDE_KEY in m.model_options["transformer_options"]


def test_root_package_fresh_interpreter(tmp_path):
    """A fresh interpreter without ComfyUI, without the library: importing the node folder
    neither raises nor exports anything."""
    code = (
        "import importlib.util, sys, logging\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        f"spec = importlib.util.spec_from_file_location('node', {os.path.join(ROOT, '__init__.py')!r},"
        f" submodule_search_locations=[{ROOT!r}])\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "print('EXPORTS', sorted(m.__all__))\n"
    )
    env = dict(os.environ, TAYLOR_ATTENTION_LIB=str(tmp_path / "none.so"))
    env.pop("PYTHONPATH", None)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=str(tmp_path), timeout=120)
    assert res.returncode == 0, res.stderr
    assert "EXPORTS []" in res.stdout
    assert "no V3 node API" in res.stderr


def test_docs_describe_every_parameter():
    text = open(os.path.join(ROOT, "docs", "comfyui.md")).read()
    for name in ["backend", *EXPECTED_DEFAULTS]:
        assert f"| `{name}` |" in text, name
    for reason in taylor_attention._lib.REASONS.values():
        if reason != "none":
            assert f"`{reason}`" in text, reason
