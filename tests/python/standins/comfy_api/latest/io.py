"""Stand-in for ``comfy_api.latest.io`` (tests only): records what the node declares."""

from dataclasses import dataclass, field
from typing import Any, List, Optional


class _Input:
    io_type = "ANY"

    def __init__(self, id: str, display_name: Optional[str] = None, optional: bool = False,
                 tooltip: Optional[str] = None, default: Any = None, **extra: Any):
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.tooltip = tooltip
        self.default = default
        self.extra = extra
        for key, value in extra.items():
            setattr(self, key, value)


class _Output:
    def __init__(self, id: Optional[str] = None, display_name: Optional[str] = None,
                 tooltip: Optional[str] = None):
        self.id = id
        self.display_name = display_name
        self.tooltip = tooltip


def _io_type(name: str):
    class Input(_Input):
        io_type = name

        def __init__(self, id, display_name=None, optional=False, tooltip=None, default=None,
                     min=None, max=None, step=None, options=None, **extra):
            super().__init__(id, display_name, optional, tooltip, default, **extra)
            self.min, self.max, self.step, self.options = min, max, step, options

    class Output(_Output):
        io_type = name

    return type(name, (), {"Input": Input, "Output": Output, "io_type": name})


Model = _io_type("MODEL")
Int = _io_type("INT")
Float = _io_type("FLOAT")
Boolean = _io_type("BOOLEAN")
Combo = _io_type("COMBO")


@dataclass
class Schema:
    node_id: str
    display_name: Optional[str] = None
    category: str = "sd"
    inputs: List[Any] = field(default_factory=list)
    outputs: List[Any] = field(default_factory=list)
    description: str = ""
    is_experimental: bool = False
    is_deprecated: bool = False
    is_output_node: bool = False


class NodeOutput:
    def __init__(self, *args: Any, **kwargs: Any):
        self.args = args
        self.kwargs = kwargs

    @property
    def result(self):
        return self.args if self.args else None


class ComfyNode:
    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs: Any) -> NodeOutput:
        raise NotImplementedError
