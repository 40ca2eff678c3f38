"""Stand-in for ``comfy.patcher_extension`` (tests only), written from the contract: the
wrapper kinds and the executor that runs a wrapper chain. The node imports only
``WrappersMP.APPLY_MODEL`` from it."""

from taylor_attention.dispatch import WrapperExecutor, wrappers_of  # noqa: F401


class WrappersMP:
    OUTER_SAMPLE = "outer_sample"
    SAMPLER_SAMPLE = "sampler_sample"
    CALC_COND_BATCH = "calc_cond_batch"
    APPLY_MODEL = "apply_model"
    DIFFUSION_MODEL = "diffusion_model"


def get_all_wrappers(kind, transformer_options, is_model_options=False):
    if is_model_options:
        transformer_options = transformer_options.get("transformer_options", {})
    return wrappers_of(kind, transformer_options)
