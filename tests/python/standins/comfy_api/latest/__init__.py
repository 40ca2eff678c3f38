"""Stand-in for ``comfy_api.latest``: ComfyExtension and the ``io`` namespace, with the
constructor arguments the V3 contract documents (tests only)."""

from . import io  # noqa: F401

__all__ = ["ComfyExtension", "io"]


class ComfyExtension:
    async def on_load(self) -> None:
        pass

    async def get_node_list(self):
        raise NotImplementedError
