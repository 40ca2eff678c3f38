"""The ComfyUI node "Taylor Attention Backend" (V3 node API).

Without ``comfy_api.latest`` (an old ComfyUI, or outside ComfyUI) this module still
imports: :data:`COMFY_API_AVAILABLE` is False, no node class is defined, and
:func:`apply_backend` (the node's logic on a ModelPatcher-like object) remains usable.
"""

from __future__ import annotations

import logging
from typing import Any, List

from . import _lib
from .config import BACKENDS, PARAMS, TaylorConfig
from .model_layout import install_recorder, remove_recorder
from .override import CONFIG_KEY, OVERRIDE_KEY, install, uninstall

log = logging.getLogger("taylor_attention")

NODE_ID = "TaylorAttentionBackend"
DISPLAY_NAME = "Taylor Attention Backend"
CATEGORY = "advanced/attention"
DESCRIPTION = (
    "Switches the model's attention to Taylor attention: exp replaced by its truncated Taylor "
    "series over symmetric polynomial features, linear in the number of tokens. Calls it "
    "declines (guards, numerical checks, unsupported device or dtype, missing library) run "
    "the standard attention. With window_radius > 0 each image query's neighbourhood (and "
    "the text) is weighted exactly (the local-exact hybrid); the node reads the token layout "
    "from each model call. 'standard' removes the override again."
)

try:
    from comfy_api.latest import ComfyExtension, io  # type: ignore

    COMFY_API_AVAILABLE = True
    COMFY_API_ERROR = ""
except Exception as exc:  # noqa: BLE001 - old ComfyUI or no ComfyUI
    ComfyExtension = None  # type: ignore
    io = None  # type: ignore
    COMFY_API_AVAILABLE = False
    COMFY_API_ERROR = f"{type(exc).__name__}: {exc}"


_availability_logged = [False]


def log_availability_once() -> None:
    """Logs once why Taylor is unavailable (library missing, no CUDA backend for a CUDA
    torch) and how to build it."""
    if _availability_logged[0]:
        return
    _availability_logged[0] = True
    lib = _lib.try_load_library()  # logs the missing library with the build command
    if lib is None:
        return
    try:
        import torch

        cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        cuda = False
    if cuda and not lib.backend_available(_lib.TA_DEVICE_CUDA):
        log.warning("taylor_attention: %s (version %s) has no CUDA backend: attention on CUDA "
                    "tensors falls back to standard attention (reason unsupported_device). "
                    "Rebuild with the CUDA toolkit installed to get it.", lib.path, lib.version)
    else:
        log.info("taylor_attention: using %s (version %s)", lib.path, lib.version)


def apply_backend(model: Any, backend: str = "taylor", **params: Any) -> Any:
    """The node's work: a clone of ``model`` with the Taylor override installed
    (``backend="taylor"``) or removed with any displaced override restored
    (``"standard"``). ``params`` are the node parameters (defaults otherwise).

    With ``window_radius`` > 0 the clone's model call is also wrapped so that each call's
    token layout reaches the override (:func:`model_layout.install_recorder`); "standard"
    and a taylor node with the window off remove that wrapper again."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    m = model.clone()
    if backend == "standard":
        uninstall(m.model_options)
        remove_recorder(m)
        return m
    config = TaylorConfig.from_kwargs(check=True, **params)
    log_availability_once()
    state = install(m.model_options, config)
    if config.window_radius > 0:
        how = install_recorder(m, state.layouts)
        if not how:
            log.warning("taylor_attention: this model offers no way to wrap its model call "
                        "(no wrapper registry, no model_options): the window cannot learn the "
                        "token layout and every call runs plain Taylor attention")
    else:
        remove_recorder(m)
    return m


def _param_inputs() -> List[Any]:
    inputs = []
    for p in PARAMS:
        if p.kind == "bool":
            inputs.append(io.Boolean.Input(p.name, default=p.default, tooltip=p.tooltip))
        elif p.kind == "int":
            inputs.append(io.Int.Input(p.name, default=p.default, min=int(p.min), max=int(p.max),
                                       step=int(p.step), tooltip=p.tooltip))
        else:
            inputs.append(io.Float.Input(p.name, default=p.default, min=p.min, max=p.max,
                                         step=p.step, tooltip=p.tooltip))
    return inputs


if COMFY_API_AVAILABLE:

    class TaylorAttentionBackend(io.ComfyNode):
        """Taylor Attention Backend: installs (or removes) the Taylor attention override."""

        @classmethod
        def define_schema(cls):
            return io.Schema(
                node_id=NODE_ID,
                display_name=DISPLAY_NAME,
                category=CATEGORY,
                description=DESCRIPTION,
                inputs=[
                    io.Model.Input("model", tooltip="The diffusion model to patch (a clone is returned)."),
                    io.Combo.Input("backend", options=list(BACKENDS), default="taylor",
                                   tooltip="taylor: install Taylor attention. standard: remove it "
                                           "(restoring any override it replaced)."),
                    *_param_inputs(),
                ],
                outputs=[io.Model.Output()],
                is_experimental=True,
            )

        @classmethod
        def execute(cls, model, backend="taylor", **params):
            return io.NodeOutput(apply_backend(model, backend, **params))

    class TaylorAttentionExtension(ComfyExtension):
        async def get_node_list(self):
            return [TaylorAttentionBackend]

    async def comfy_entrypoint():
        return TaylorAttentionExtension()

__all__ = ["apply_backend", "COMFY_API_AVAILABLE", "NODE_ID", "DISPLAY_NAME", "CATEGORY",
           "OVERRIDE_KEY", "CONFIG_KEY"]
