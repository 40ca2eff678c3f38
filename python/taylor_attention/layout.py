"""The token layout of an attention call, for the local-exact hybrid.

Flux-style joint attention runs over ``[text | image grid | reference grids]``: a number
of leading text tokens, then row-major grids of ``h x w`` tokens. With a layout the engine
weights each query's neighbourhood on its own grid (and, by default, the text) with exact
``exp`` and only the rest with the Taylor polynomial (docs/math.md, "Local-exact hybrid").
:class:`TokenLayout` is the Python value; it validates itself and converts to the C
``ta_token_layout`` and to the flat ``int[]`` the custom op carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, List, Optional, Sequence, Tuple

from . import _lib

#: Most grids one layout may hold (TA_MAX_GRIDS of the header).
MAX_GRIDS = _lib.TA_MAX_GRIDS


@dataclass(frozen=True)
class TokenLayout:
    """``text_tokens`` leading tokens, then ``grids`` as ``((h0, w0), (h1, w1), ...)``.

    Raises ValueError for a negative text count, more than :data:`MAX_GRIDS` grids or a
    grid smaller than 1x1. :meth:`check` compares the token count with a call's N."""

    text_tokens: int
    grids: Tuple[Tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        text = _as_int(self.text_tokens, "text_tokens")
        if text < 0:
            raise ValueError(f"TokenLayout: text_tokens must be >= 0, is {text}")
        grids = tuple(_as_grid(g, i) for i, g in enumerate(self.grids))
        if len(grids) > MAX_GRIDS:
            raise ValueError(f"TokenLayout: at most {MAX_GRIDS} grids, got {len(grids)}")
        object.__setattr__(self, "text_tokens", text)
        object.__setattr__(self, "grids", grids)

    @property
    def tokens(self) -> int:
        """text + sum(h * w): the N of a call this layout describes."""
        return self.text_tokens + sum(h * w for h, w in self.grids)

    def matches(self, tokens: int) -> bool:
        return self.tokens == int(tokens)

    def check(self, tokens: int) -> None:
        """ValueError unless text + sum(h*w) equals ``tokens``."""
        if not self.matches(tokens):
            raise ValueError(f"TokenLayout {self.describe()} has {self.tokens} tokens, but the call "
                             f"has N = {int(tokens)}")

    def describe(self) -> str:
        """Short text for logs: "text 256 + 64x64 + 32x32"."""
        parts = [f"text {self.text_tokens}"] + [f"{h}x{w}" for h, w in self.grids]
        return " + ".join(parts)

    def to_c(self) -> _lib.TaTokenLayout:
        c = _lib.TaTokenLayout()
        c.text_tokens = self.text_tokens
        c.num_grids = len(self.grids)
        for i, (h, w) in enumerate(self.grids):
            c.grid_height[i] = h
            c.grid_width[i] = w
        return c

    def pack(self) -> List[int]:
        """``[text, h0, w0, h1, w1, ...]``: the custom op's ``int[] layout``."""
        out = [self.text_tokens]
        for h, w in self.grids:
            out += [h, w]
        return out

    @classmethod
    def unpack(cls, values: Sequence[int]) -> Optional["TokenLayout"]:
        """Inverse of :meth:`pack`; an empty sequence means no layout (None)."""
        values = [int(v) for v in values]
        if not values:
            return None
        if len(values) % 2 != 1:
            raise ValueError(f"a packed layout is [text, h0, w0, ...] (odd length), got {values}")
        rest = values[1:]
        return cls(values[0], tuple((rest[i], rest[i + 1]) for i in range(0, len(rest), 2)))

    @classmethod
    def coerce(cls, value: Any) -> Optional["TokenLayout"]:
        """None, a TokenLayout, or ``(text_tokens, [(h, w), ...])``."""
        if value is None or isinstance(value, TokenLayout):
            return value
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return cls(value[0], tuple(value[1]))
        raise TypeError(f"layout must be a TokenLayout or (text_tokens, [(h, w), ...]), not {value!r}")


def pack_layout(layout: Optional[TokenLayout]) -> List[int]:
    return [] if layout is None else layout.pack()


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ValueError(f"TokenLayout: {what} must be an integer, got {value!r}")
    return int(value)


def _as_grid(value: Iterable[Any], index: int) -> Tuple[int, int]:
    try:
        h, w = value
    except (TypeError, ValueError):
        raise ValueError(f"TokenLayout: grid {index} must be (height, width), got {value!r}") from None
    h, w = _as_int(h, f"grid {index} height"), _as_int(w, f"grid {index} width")
    if h < 1 or w < 1:
        raise ValueError(f"TokenLayout: grid {index} is {h}x{w} (need >= 1x1)")
    return h, w
