"""ComfyUI custom-node entry of taylor-attention (this repository is the node folder).

Imports nothing that can break ComfyUI: every failure (no torch, no built library, no
CUDA, an old ComfyUI without ``comfy_api.latest``) is logged once and leaves ComfyUI
working. The Python package lives in ``python/taylor_attention``.
"""

import logging
import os
import sys

_log = logging.getLogger("taylor_attention")
_PYTHON_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "python")


def _load_node_module():
    try:
        if _PYTHON_DIR not in sys.path:
            sys.path.insert(0, _PYTHON_DIR)
        from taylor_attention import comfy_node
    except Exception as exc:  # noqa: BLE001 - never break ComfyUI's node loading
        _log.warning("taylor_attention: the node could not be loaded (%s: %s); standard "
                     "attention is unaffected.", type(exc).__name__, exc)
        return None
    if not comfy_node.COMFY_API_AVAILABLE:
        _log.warning("taylor_attention: this ComfyUI has no V3 node API (comfy_api.latest: %s); "
                     "the Taylor Attention Backend node is not registered. Update ComfyUI.",
                     comfy_node.COMFY_API_ERROR)
        return None
    try:
        comfy_node.log_availability_once()
    except Exception:  # noqa: BLE001
        pass
    return comfy_node


_node_module = _load_node_module()

if _node_module is not None:
    comfy_entrypoint = _node_module.comfy_entrypoint
    __all__ = ["comfy_entrypoint"]
else:
    __all__ = []
