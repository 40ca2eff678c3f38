"""The node's layout detection end to end: a Flux-shaped stand-in model called the way
ComfyUI's sampler calls it, the node's model-call wrapper (registry and classic), the
layout reaching the engine in double and single blocks, reference latents, patch size 1,
the fallback to plain Taylor with one log line, and the standard/taylor toggle."""

import logging

import pytest
import torch

import taylor_attention as ta
from fake_comfy import BaseModelStandIn, FakeModelPatcher, call_attention, run_model
from fake_flux import TinyFlux
from taylor_attention import comfy_node, engine, model_layout, override
from ta_reference import TOL, hybrid_reference, rel_l2, taylor_reference

PARAMS = dict(P=3, sub_head_blocks=1, min_tokens=0, window_radius=2, quality_check=False)


def flux_patcher(registry=True, **model_kwargs):
    tiny = TinyFlux(**model_kwargs)
    return FakeModelPatcher(model=BaseModelStandIn(tiny), registry=registry), tiny


def node(model, **params):
    return comfy_node.TaylorAttentionBackend.execute(model, **params).args[0]


def state_of(m):
    return m.model_options["transformer_options"][override.CONFIG_KEY]


def step(m, x, text=12, seed=0, **c):
    g = torch.Generator().manual_seed(seed)
    context = torch.randn(x.shape[0], text, 32, generator=g)
    with torch.inference_mode():
        return run_model(m, x, torch.full((x.shape[0],), 0.5), c_crossattn=context, **c)


def latent(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def engine_calls(monkeypatch):
    """Every engine run: (layout, q, k, v, out, stats)."""
    seen = []
    real_run = engine.Call.run

    def run(self, quality_check=None):
        stats = real_run(self, quality_check)
        seen.append((self.layout, self.q.clone(), self.k.clone(), self.v.clone(), self.out.clone(), stats))
        return stats

    monkeypatch.setattr(engine.Call, "run", run)
    return seen


@pytest.mark.parametrize("registry", [True, False], ids=["registry", "classic"])
def test_layout_reaches_the_engine_in_double_and_single_blocks(lib, registry, engine_calls):
    base, tiny = flux_patcher(registry)
    m = node(base, backend="taylor", **PARAMS)
    assert model_layout.recorder_of(m) is not None and model_layout.recorder_of(base) is None
    for s in range(2):
        step(m, latent(1, 4, 16, 16), seed=s)
    ov = state_of(m)
    assert [c[0] for c in tiny.attention_calls] == ["double", "single"] * 2
    assert all(n == 12 + 64 for _, n in tiny.attention_calls)
    assert ov.by_backend == {"taylor": 4} and ov.window_calls == 4 and not ov.window_off
    expected = ta.TokenLayout(12, ((8, 8),))
    for layout, q, k, v, out, stats in engine_calls:
        assert layout == expected and stats.window_active
        # the engine's answer is the hybrid over [text | image] in Flux's token order
        ref = hybrid_reference(q, k, v, 12, [(8, 8)], 2, P=3, sub_head_blocks=1)
        assert rel_l2(out.transpose(1, 2) if out.shape != ref.shape else out, ref) < TOL[torch.float32]
        assert rel_l2(taylor_reference(q, k, v, P=3, sub_head_blocks=1), ref) > 1e-3
    assert ov.summary()["window_calls"] == 4


def test_reference_latents_append_grids(lib, engine_calls):
    base, tiny = flux_patcher()
    m = node(base, backend="taylor", **PARAMS)
    step(m, latent(1, 4, 16, 16), ref_latents=[latent(1, 4, 12, 7, seed=2)])
    assert tiny.attention_calls[0][1] == 12 + 64 + 6 * 4
    assert {c[0] for c in engine_calls} == {ta.TokenLayout(12, ((8, 8), (6, 4)))}
    assert state_of(m).window_calls == 2


def test_patch_size_one_found_without_the_model_saying(lib, engine_calls):
    """Flux2-style patchified latents on a model that does not declare its patch size:
    patch 2 gives 16 tokens, patch 1 the 64 the call has."""
    base, tiny = flux_patcher(patch_size=1, declare_patch_size=False)
    m = node(base, backend="taylor", **PARAMS)
    step(m, latent(1, 4, 8, 8))
    assert {c[0] for c in engine_calls} == {ta.TokenLayout(12, ((8, 8),))}
    assert state_of(m).window_calls == 2


def test_mismatched_layout_runs_plain_taylor_and_logs_once(lib, engine_calls, caplog):
    base, tiny = flux_patcher(extra_tokens=3)  # the model adds tokens the call record cannot see
    m = node(base, backend="taylor", **PARAMS)
    with caplog.at_level(logging.DEBUG, logger="taylor_attention"):
        for s in range(3):
            step(m, latent(1, 4, 16, 16), seed=s)
    ov = state_of(m)
    assert ov.by_backend == {"taylor": 6} and not ov.by_reason
    assert ov.window_calls == 0 and ov.window_off == {model_layout.LAYOUT_MISMATCH: 6}
    lines = [r.getMessage() for r in caplog.records if "window off" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "layout unknown for N=79" in lines[0] and "text 12 + 8x8 = 76" in lines[0]
    assert "plain Taylor" in lines[0]
    for layout, q, k, v, out, stats in engine_calls:
        assert layout is None and not stats.window_active and stats.window_reason == "window_no_layout"
        assert rel_l2(out, taylor_reference(q, k, v, P=3, sub_head_blocks=1)) < TOL[torch.float32]


def test_attention_outside_a_model_call_logs_once(lib, caplog):
    m = node(FakeModelPatcher(), backend="taylor", **PARAMS)
    q = torch.randn(1, 2, 128, 32) * 0.5
    with caplog.at_level(logging.INFO, logger="taylor_attention"):
        for _ in range(3):
            call_attention(m, q, q, q, 2, skip_reshape=True)
    lines = [r.getMessage() for r in caplog.records if "window off" in r.getMessage()]
    assert len(lines) == 1 and "no diffusion-model call was recorded" in lines[0]
    assert state_of(m).window_off == {model_layout.NO_MODEL_CALL: 3}


def test_fallback_calls_do_not_log_the_window(lib, caplog):
    """A call that falls back anyway (below min_tokens) says only that."""
    m = node(FakeModelPatcher(), backend="taylor", **dict(PARAMS, min_tokens=1000))
    q = torch.randn(1, 2, 128, 32)
    with caplog.at_level(logging.INFO, logger="taylor_attention"):
        call_attention(m, q, q, q, 2, skip_reshape=True)
    assert not any("window off" in r.getMessage() for r in caplog.records)
    assert state_of(m).by_reason == {"below_min_tokens": 1}


def test_new_shape_line_names_the_window(lib, caplog):
    base, _ = flux_patcher()
    m = node(base, backend="taylor", **PARAMS)
    with caplog.at_level(logging.INFO, logger="taylor_attention"):
        step(m, latent(1, 4, 16, 16))
    shapes = [r.getMessage() for r in caplog.records if "new shape" in r.getMessage()]
    assert len(shapes) == 1 and "window r=2 over text 12 + 8x8" in shapes[0]


@pytest.mark.parametrize("registry", [True, False], ids=["registry", "classic"])
def test_toggle_removes_the_wrapper(lib, registry):
    base, tiny = flux_patcher(registry)
    m = node(base, backend="taylor", **PARAMS)
    assert model_layout.recorder_of(m) is not None
    std = node(m, backend="standard")
    assert model_layout.recorder_of(std) is None and override.OVERRIDE_KEY not in std.model_options["transformer_options"]
    if registry:
        assert model_layout.WRAPPER_KEY not in std.wrappers.get("apply_model", {})
    else:
        assert "model_function_wrapper" not in std.model_options
    step(std, latent(1, 4, 16, 16))  # plain ComfyUI again
    assert model_layout.recorder_of(m) is not None  # the taylor clone keeps its own
    # taylor again, then taylor with the window off: the recorder goes too
    again = node(std, backend="taylor", **PARAMS)
    assert model_layout.recorder_of(again).taylor_tracker is state_of(again).layouts
    off = node(again, backend="taylor", **dict(PARAMS, window_radius=0))
    assert model_layout.recorder_of(off) is None


def test_existing_classic_wrapper_is_chained(lib):
    base, tiny = flux_patcher(registry=False)
    called = []

    def existing(apply_model, args):
        called.append(args["input"].shape)
        return apply_model(args["input"], args["timestep"], **args["c"])

    base.set_model_unet_function_wrapper(existing)
    m = node(base, backend="taylor", **PARAMS)
    step(m, latent(1, 4, 16, 16))
    assert called == [(1, 4, 16, 16)] and state_of(m).window_calls == 2
    std = node(m, backend="standard")
    assert std.model_options["model_function_wrapper"] is existing
    step(std, latent(1, 4, 16, 16))
    assert len(called) == 2


def test_clone_after_the_node_keeps_detection(lib):
    """A LoRA loader after our node clones the patcher: wrapper and state are shared."""
    base, _ = flux_patcher()
    m = node(base, backend="taylor", **PARAMS)
    later = m.clone()
    step(later, latent(1, 4, 16, 16))
    assert state_of(m).window_calls == 2 and state_of(later) is state_of(m)


def test_batched_cond_uncond(lib, engine_calls):
    base, _ = flux_patcher()
    m = node(base, backend="taylor", **PARAMS)
    step(m, latent(2, 4, 10, 14))
    assert {c[0] for c in engine_calls} == {ta.TokenLayout(12, ((5, 7),))}
    assert all(c[5].window_active for c in engine_calls)


def test_default_node_parameters_use_the_window(lib):
    base, _ = flux_patcher()
    m = node(base, backend="taylor", min_tokens=0)
    step(m, latent(1, 4, 16, 16))
    ov = state_of(m)
    assert ov.config.window_radius == 4 and ov.window_calls == 2 and ov.last_stats.window_active


@pytest.mark.skipif(not hasattr(torch, "compile") or not ta.op_available(), reason="needs torch.compile")
def test_compiled_model_still_gets_the_layout(lib):
    torch._dynamo.reset()
    base, tiny = flux_patcher()
    base.model.diffusion_model = torch.compile(tiny, backend="aot_eager")
    m = node(base, backend="taylor", **PARAMS)
    try:
        step(m, latent(1, 4, 16, 16))
    finally:
        torch._dynamo.reset()
    ov = state_of(m)
    assert ov.by_backend == {"taylor": 2} and ov.window_calls == 2 and ov.last_stats.window_active
