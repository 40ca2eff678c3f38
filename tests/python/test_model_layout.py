"""Reading the token layout from a model call: candidates per patch size, the tracker's
answers, and installing / chaining / removing the model-call wrapper on a ModelPatcher
(registry and classic), without the library."""

import re
import threading
import types

import pytest
import torch

from fake_comfy import FakeModelPatcher, BaseModelStandIn, run_model
from taylor_attention import TokenLayout, model_layout
from taylor_attention.model_layout import (CROSS_ATTENTION, LAYOUT_MISMATCH, MODEL_CALL_UNREADABLE,
                                           NO_MODEL_CALL, LayoutTracker, describe_model_call)


def lat(*shape):
    return torch.zeros(*shape)


# ------------------------------------------------------------------ describe_model_call
def test_flux_patch2_from_model():
    model = types.SimpleNamespace(diffusion_model=types.SimpleNamespace(patch_size=2))
    call, why = describe_model_call(lat(1, 16, 128, 128), lat(1, 256, 4096), None, model)
    assert why == "" and call.candidates == (TokenLayout(256, ((64, 64),)),)
    assert call.candidates[0].tokens == 4352


def test_odd_latent_rounds_up_like_padding():
    """Flux pads the latent to a multiple of the patch: 17x33 -> 9x17 tokens."""
    model = types.SimpleNamespace(patch_size=2)
    call, _ = describe_model_call(lat(2, 16, 17, 33), lat(2, 7, 8), None, model)
    assert call.candidates == (TokenLayout(7, ((9, 17),)),)


def test_reference_latents_follow_the_main_grid():
    model = types.SimpleNamespace(patch_size=2)
    refs = [lat(1, 16, 64, 96), lat(1, 16, 30, 30)]
    call, _ = describe_model_call(lat(1, 16, 128, 128), lat(1, 512, 64), refs, model)
    assert call.candidates == (TokenLayout(512, ((64, 64), (32, 48), (15, 15))),)
    assert "reference 64x96" in call.describe()


def test_unknown_patch_size_tries_2_then_1():
    """Flux2-style latents are already patchified (patch 1); the model may not say so."""
    call, _ = describe_model_call(lat(1, 128, 64, 64), lat(1, 512, 64), None, object())
    assert call.patch_sizes == (2, 1)
    assert call.candidates == (TokenLayout(512, ((32, 32),)), TokenLayout(512, ((64, 64),)))


@pytest.mark.parametrize("x,ctx,refs,match", [
    (lat(1, 16, 4, 32, 32), lat(1, 8, 4), None, r"latent has shape \[1, 16, 4, 32, 32\]"),
    (lat(1, 16, 32, 32), lat(8, 4), None, "text conditioning has shape"),
    (lat(1, 16, 32, 32), lat(1, 8, 4), [lat(16, 32, 32)], "reference latent 0 has shape"),
    (lat(1, 16, 32, 32), lat(1, 8, 4), [lat(1, 16, 8, 8)] * 8, "at most 7 are supported"),
    ("not a tensor", lat(1, 8, 4), None, "not \\[B, C, H, W\\]"),
])
def test_unreadable_model_calls(x, ctx, refs, match):
    call, why = describe_model_call(x, ctx, refs, None)
    assert call is None
    assert re.search(match, why), why


# ------------------------------------------------------------------ the tracker
def test_tracker_answers():
    tracker = LayoutTracker()
    assert tracker.layout_for(80, 80)[1] == NO_MODEL_CALL
    call, _ = describe_model_call(lat(1, 4, 16, 16), lat(1, 16, 8), None, types.SimpleNamespace(patch_size=2))
    with tracker.model_call(call):
        assert tracker.layout_for(80, 80) == (TokenLayout(16, ((8, 8),)), "", "")
        layout, code, why = tracker.layout_for(83, 83)
        assert layout is None and code == LAYOUT_MISMATCH
        assert "layout unknown for N=83" in why and "text 16 + 8x8 = 80" in why
        assert tracker.layout_for(80, 30)[1] == CROSS_ATTENTION
        with tracker.model_call(None, "the latent has shape [1]"):  # nested, unreadable
            layout, code, why = tracker.layout_for(80, 80)
            assert code == MODEL_CALL_UNREADABLE and "shape [1]" in why
        assert tracker.layout_for(80, 80)[0] is not None  # back to the outer call
    assert tracker.layout_for(80, 80)[1] == NO_MODEL_CALL and tracker.model_calls == 2


def test_tracker_pops_on_exception():
    tracker = LayoutTracker()
    with pytest.raises(RuntimeError):
        with tracker.model_call(None, "x"):
            raise RuntimeError("model failed")
    assert tracker.current() is None


def test_tracker_is_per_thread():
    tracker = LayoutTracker()
    call, _ = describe_model_call(lat(1, 4, 4, 4), lat(1, 2, 8), None, types.SimpleNamespace(patch_size=2))
    seen = []
    with tracker.model_call(call):
        t = threading.Thread(target=lambda: seen.append(tracker.layout_for(6, 6)[1]))
        t.start()
        t.join()
        assert tracker.layout_for(6, 6)[0] is not None
    assert seen == [NO_MODEL_CALL]


# ------------------------------------------------------------------ installing the recorder
class RecordingDiffusionModel:
    """Records the layout the tracker answers while the model runs."""

    patch_size = 2

    def __init__(self, tracker, n):
        self.tracker, self.n, self.seen = tracker, n, []

    def __call__(self, x, t, context=None, transformer_options=None, **kwargs):
        self.seen.append(self.tracker.layout_for(self.n, self.n)[0])
        return x


def patcher_with(tracker, n, registry=True, options=None):
    model = BaseModelStandIn(RecordingDiffusionModel(tracker, n))
    return FakeModelPatcher(options, model=model, registry=registry), model.diffusion_model


@pytest.mark.parametrize("registry", [True, False], ids=["registry", "classic"])
def test_recorder_feeds_the_tracker(registry):
    tracker = LayoutTracker()
    base, dm = patcher_with(tracker, 16 + 8 * 8 + 4 * 4, registry)
    m = base.clone()
    how = model_layout.install_recorder(m, tracker)
    assert how == ("apply_model wrapper" if registry else "model_function_wrapper")
    x = lat(1, 4, 16, 16)
    run_model(m, x, torch.zeros(1), c_crossattn=lat(1, 16, 8), ref_latents=[lat(1, 4, 8, 8)])
    assert dm.seen == [TokenLayout(16, ((8, 8), (4, 4)))]
    assert tracker.current() is None
    run_model(base, x, torch.zeros(1), c_crossattn=lat(1, 16, 8))  # the input model is untouched
    assert dm.seen[-1] is None and model_layout.recorder_of(base) is None


def test_classic_recorder_chains_an_existing_wrapper():
    tracker = LayoutTracker()
    calls = []

    def existing(apply_model, args):
        calls.append(tracker.layout_for(80, 80)[0])  # runs inside our recording
        return apply_model(args["input"], args["timestep"], **args["c"])

    base, dm = patcher_with(tracker, 80, registry=False, options={"transformer_options": {}})
    base.set_model_unet_function_wrapper(existing)
    m = base.clone()
    model_layout.install_recorder(m, tracker)
    assert m.model_options["model_function_wrapper"].taylor_previous is existing
    run_model(m, lat(1, 4, 16, 16), torch.zeros(1), c_crossattn=lat(1, 16, 8))
    assert calls == [TokenLayout(16, ((8, 8),))] and dm.seen == calls
    # installing again replaces ours and keeps chaining to the same wrapper
    model_layout.install_recorder(m, tracker)
    assert m.model_options["model_function_wrapper"].taylor_previous is existing
    model_layout.remove_recorder(m)
    assert m.model_options["model_function_wrapper"] is existing
    model_layout.remove_recorder(m)  # a foreign wrapper stays
    assert m.model_options["model_function_wrapper"] is existing


def test_registry_recorder_runs_with_other_wrappers():
    tracker = LayoutTracker()
    order = []

    def other(executor, *args, **kwargs):
        order.append("other")
        return executor(*args, **kwargs)

    base, dm = patcher_with(tracker, 80)
    base.add_wrapper_with_key("apply_model", "someone.else", other)
    m = base.clone()
    model_layout.install_recorder(m, tracker)
    model_layout.install_recorder(m, tracker)  # replaced, not stacked
    assert len(m.wrappers["apply_model"][model_layout.WRAPPER_KEY]) == 1
    run_model(m, lat(1, 4, 16, 16), torch.zeros(1), c_crossattn=lat(1, 16, 8))
    assert order == ["other"] and dm.seen == [TokenLayout(16, ((8, 8),))]
    model_layout.remove_recorder(m)
    assert model_layout.WRAPPER_KEY not in m.wrappers["apply_model"] and "someone.else" in m.wrappers["apply_model"]


def test_recorder_never_breaks_the_model_call():
    """An unreadable call is recorded as such; the model still runs."""
    tracker = LayoutTracker()
    base, dm = patcher_with(tracker, 80)
    model_layout.install_recorder(base, tracker)
    out = run_model(base, lat(1, 4, 2, 16, 16), torch.zeros(1), c_crossattn=lat(1, 16, 8))
    assert out.shape == (1, 4, 2, 16, 16) and dm.seen == [None]


def test_wrapper_type_comes_from_comfy_when_importable():
    assert model_layout.apply_model_wrapper_type() == "apply_model"  # the stand-in's value
