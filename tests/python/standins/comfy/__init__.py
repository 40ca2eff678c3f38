"""Stand-in package for ComfyUI's comfy (tests only)."""
