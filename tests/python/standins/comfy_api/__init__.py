"""Stand-in package for ComfyUI's comfy_api (tests only)."""
