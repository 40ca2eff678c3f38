"""Stand-in for ``comfy.model_management`` (tests only): ``get_free_memory`` answers
``FREE_BYTES`` and ``free_memory`` records its calls."""

FREE_BYTES = 1 << 40
calls = []  # ("get_free_memory", device) / ("free_memory", bytes, device)


def get_free_memory(dev=None, torch_free_too=False):
    calls.append(("get_free_memory", dev))
    return FREE_BYTES


def free_memory(memory_required, device, keep_loaded=[]):  # noqa: B006 - documented signature
    calls.append(("free_memory", memory_required, device))
    return []


def reset(free_bytes=1 << 40):
    global FREE_BYTES
    FREE_BYTES = free_bytes
    calls.clear()
