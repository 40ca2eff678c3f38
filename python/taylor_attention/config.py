"""Every parameter of the node: one table used by the node schema, the config
dataclass, the docs and the tests.

Feature dimension of one slice of width s = d / sub_head_blocks with P terms:
R = C(s + P - 1, P - 1) (MATH.md). For reference: d=128,P=3 -> 8,385;
d=128,P=4 -> 366,145; d=64,P=4 -> 47,905; d=32,P=4 -> 6,545.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "int" | "float" | "bool"
    default: Any
    tooltip: str
    min: Optional[float] = None
    max: Optional[float] = None
    step: Optional[float] = None
    engine: bool = True  # field of ta_config (False: Python-side only)


PARAMS: List[Param] = [
    Param("P", "int", 4,
          "Number of Taylor terms of exp (degrees 0..P-1). Feature dimension per slice is "
          "R = C(d+P-1, P-1): d=128 gives 8,385 at P=3 and 366,145 at P=4; d=32 (Flux's 128 "
          "split into 4 sub-head blocks) gives 6,545 at P=4. Odd P keeps the kernel positive.",
          1, 8, 1),
    Param("min_tokens", "int", 100,
          "Calls whose longer sequence (max of query and key tokens) is shorter than this use "
          "standard attention (fallback reason below_min_tokens).", 0, 10_000_000, 1),
    Param("max_feature_dim_R", "int", 370000,
          "Largest feature dimension R per slice allowed; larger configs fall back "
          "(feature_dim_too_large). The default 370,000 admits d=128 at P=4 (366,145). "
          "State memory per head and slice is about R*(dv+1)*4 bytes.", 1, 100_000_000, 1),
    Param("sub_head_blocks", "int", 4,
          "G: split each head into G slices of d/G dims and run an independent Taylor "
          "attention on each (scale*sqrt(G) per slice), concatenating the outputs. Shrinks R "
          "(d=128, P=4: 366,145 -> 4 x 6,545) but changes the function: it is not an "
          "approximation of the original attention. 1 = full heads.", 1, 64, 1),
    Param("window_radius", "int", 4,
          "Local-exact hybrid: each image query weights the keys within this many tokens on "
          "its own grid (Chebyshev distance: 4 = a 9x9 neighbourhood) with exact exp and only "
          "the far keys with the Taylor polynomial. The largest scores sit next to each query: "
          "on the library's Flux-like synthetic workload (256 text + 64x64 tokens, d=128) the "
          "error against exact attention fell from 0.75 to 0.040 at r=4 with full heads and "
          "P=3; with sub_head_blocks=4 the slicing itself dominates the error (0.84 plain, "
          "0.75 at r=4). "
          "Costs (2r+1)^2 extra key weights per "
          "query, a few percent of the feature work at Flux sizes. Needs the token layout, "
          "which the node reads from each model call (latent size, text length, reference "
          "latents); when it is unknown or does not match the call (other models, cross "
          "attention) the call runs plain Taylor and the log says why once per shape. "
          "0 = off (plain Taylor everywhere).", 0, 64, 1),
    Param("window_text_keys", "bool", True,
          "With the window: text keys are weighted exactly for every query too (they carry "
          "the prompt; costs text_tokens extra key weights per query)."),
    Param("window_text_queries", "bool", True,
          "With the window: text queries get exact softmax over all keys (their rows are "
          "exact attention; costs text_tokens x N exact weights per head, about 6% of an "
          "exact call at 256 text tokens and 1024x1024)."),
    Param("qk_normalize", "bool", False,
          "Normalise every query and key slice vector to unit length (x / (|x| + eps)) before "
          "the scores. Bounds the scores; changes the function."),
    Param("scale_mul", "float", 1.0,
          "Multiplies the attention scale (default d^-1/2, or the caller's scale). Each slice "
          "uses scale * sqrt(G) * scale_mul.", 0.001, 100.0, 0.001),
    Param("block_size_q", "int", 32,
          "Queries per chunk in the query pass (bounds temporary memory; speed only).",
          1, 65536, 1),
    Param("block_size_k", "int", 16,
          "Keys per chunk in the key pass (bounds temporary memory; speed only).", 1, 65536, 1),
    Param("eps", "float", 1e-6,
          "Epsilon of qk_normalize and the denominator threshold: a denominator <= eps counts "
          "as too small.", 1e-12, 1.0, 1e-7),
    Param("fallback_on_negative", "bool", True,
          "When any denominator is <= eps (even P can make the kernel negative), fall back to "
          "standard attention (denominator_too_small). Off: clamp denominators at eps."),
    Param("allow_cross_attention", "bool", True,
          "Allow calls whose query and key lengths differ; off makes them fall back "
          "(cross_attention_disabled)."),
    Param("max_head_dim", "int", 128,
          "Largest slice head dim d/G allowed; larger falls back (head_dim_too_large).",
          1, 4096, 1),
    Param("force_fp32", "bool", False,
          "GPU: compute features and products in fp32 instead of the input precision. The CPU "
          "always computes in fp32 or better. Also switched on for a call whose "
          "attn_precision is float32."),
    Param("memory_reserve", "bool", True,
          "Before the first call of each shape, estimate its memory (state + workspace + output) "
          "and, when ComfyUI reports less free device memory, ask ComfyUI to free that much "
          "(may offload models).", engine=False),
    Param("memory_reserve_factor", "float", 1.1,
          "Safety factor applied to the memory estimate of memory_reserve.", 1.0, 8.0, 0.05,
          engine=False),
    Param("memory_reserve_log", "bool", True,
          "Log the memory estimate and whether memory was freed, once per shape.", engine=False),
    Param("early_probe", "bool", True,
          "After the key sums, check the denominators of a few sampled queries and fall back "
          "before the expensive state pass when they are too small."),
    Param("probe_samples", "int", 16,
          "Queries sampled by early_probe per batch and head.", 1, 65536, 1),
    Param("denom_fp32", "bool", True,
          "GPU: keep denominators in fp32 at least (the CPU always does)."),
    Param("quality_check", "bool", True,
          "On logged calls (see quality_check_log_every), compare sampled query rows with exact "
          "softmax attention: the error against the original attention and the truncation-only "
          "error (against exact softmax of the same sliced/normalised function)."),
    Param("quality_check_samples", "int", 16,
          "Query rows sampled per batch and head by the quality check.", 1, 65536, 1),
    Param("quality_check_log_every", "int", 1,
          "Run and log the quality check on every N-th Taylor call (1 = every call).",
          1, 1_000_000, 1, engine=False),
    Param("log_shapes", "bool", True,
          "Log each new attention shape once, with the decision and feature dimension.",
          engine=False),
    Param("log_fallbacks", "bool", True,
          "Log fallbacks with their reason (first per shape and reason at INFO, repeats at "
          "DEBUG).", engine=False),
]

PARAM_NAMES = [p.name for p in PARAMS]
DEFAULTS: Dict[str, Any] = {p.name: p.default for p in PARAMS}
BACKENDS = ["standard", "taylor"]


@dataclass
class TaylorConfig:
    """All node parameters, plus ``enabled``, ``scale`` (base scale, 0 = d^-1/2 or the
    caller's), ``seed`` and ``num_threads`` of the engine."""

    P: int = 4
    min_tokens: int = 100
    max_feature_dim_R: int = 370000
    sub_head_blocks: int = 4
    window_radius: int = 4
    window_text_keys: bool = True
    window_text_queries: bool = True
    qk_normalize: bool = False
    scale_mul: float = 1.0
    block_size_q: int = 32
    block_size_k: int = 16
    eps: float = 1e-6
    fallback_on_negative: bool = True
    allow_cross_attention: bool = True
    max_head_dim: int = 128
    force_fp32: bool = False
    memory_reserve: bool = True
    memory_reserve_factor: float = 1.1
    memory_reserve_log: bool = True
    early_probe: bool = True
    probe_samples: int = 16
    denom_fp32: bool = True
    quality_check: bool = True
    quality_check_samples: int = 16
    quality_check_log_every: int = 1
    log_shapes: bool = True
    log_fallbacks: bool = True
    enabled: bool = True
    scale: float = 0.0
    seed: int = 0
    num_threads: int = 0

    @classmethod
    def from_kwargs(cls, check: bool = False, **kwargs: Any) -> "TaylorConfig":
        """Builds a config from keyword parameters; unknown names raise TypeError. With
        ``check`` the node's ranges are enforced (ValueError); otherwise only the library
        validates (its limits are wider, e.g. P up to 16)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(f"unknown Taylor attention parameter(s): {', '.join(unknown)}")
        cfg = cls(**kwargs)
        if check:
            cfg.check()
        return cfg

    def check(self) -> None:
        """Raises ValueError for a value outside the node's ranges."""
        for p in PARAMS:
            value = getattr(self, p.name)
            if p.kind == "bool":
                continue
            if p.min is not None and value < p.min:
                raise ValueError(f"{p.name}={value} is below its minimum {p.min}")
            if p.max is not None and value > p.max:
                raise ValueError(f"{p.name}={value} is above its maximum {p.max}")

    def replace(self, **changes: Any) -> "TaylorConfig":
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def engine_fields(self) -> Dict[str, Any]:
        """The ta_config fields this config sets (everything but quality_check, which the
        caller decides per call)."""
        out = {p.name: getattr(self, p.name) for p in PARAMS if p.engine}
        out.update(enabled=self.enabled, scale=self.scale, seed=self.seed,
                   num_threads=self.num_threads)
        return out


def feature_dim(d: int, P: int) -> int:
    """R(d, P) = C(d + P - 1, P - 1), computed in Python (no library needed)."""
    from math import comb

    return comb(d + P - 1, P - 1)
