"""Defaults of `mattebridge serve`'s limits, read by the front (server/app.py) and the model workers alike
without importing torch (docs/security.md lists them)."""

MAX_CLIPS_PER_CLIENT = 16  # --max-clips-per-client, across every device
MAX_OBJECTS = 64  # --max-objects
MAX_FRAME_PIXELS = 8192 * 8192  # --max-frame-pixels: 8K plates with overscan; float32 RGB of this size is 768 MiB
FEATURE_CACHE_MB = 1024  # --feature-cache-mb, per device: ~9 frames' image features at the model's 1024 px
