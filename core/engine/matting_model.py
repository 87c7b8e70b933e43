"""The matting model of `--edge matte`: ViTMatte (Yao et al. 2024) through transformers'
VitMatteForImageMatting, by catalogue name (downloaded and verified like the hub trackers) or from a local
folder (`--matte-model DIR`: config.json + safetensors).

Input as transformers' VitMatteImageProcessor prepares it: display-referred RGB 0..1 normalised to -1..1
(mean 0.5, std 0.5), the trimap 0..1 as a fourth channel, zero-padded at the bottom and right to a
multiple of 32. On CUDA the forward runs in bf16 autocast (fp16 where bf16 is not supported): the
published weights were trained in mixed precision and the alpha head's sigmoid is taken in float32; on a
CPU or other device, float32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from mattebridge.core.engine import catalog
from mattebridge.core.errors import MatteBridgeError

DEFAULT_MATTE_MODEL = "vitmatte-small-composition-1k"
PAD = 32  # ViTMatte's patch grid and decoder strides need sides divisible by 32

MATTING_ENTRIES = [
    catalog.CatalogEntry(
        "vitmatte-small-composition-1k",
        "vitmatte",
        "matting",
        "MIT",
        "https://huggingface.co/hustvl/vitmatte-small-composition-1k",
        "25.8M params (ViT-S), ~100 MB",
        repo="hustvl/vitmatte-small-composition-1k",
        model_type="vitmatte",
    ),
    catalog.CatalogEntry(
        "vitmatte-base-composition-1k",
        "vitmatte",
        "matting",
        "MIT",
        "https://huggingface.co/hustvl/vitmatte-base-composition-1k",
        "96.7M params (ViT-B), ~390 MB",
        repo="hustvl/vitmatte-base-composition-1k",
        model_type="vitmatte",
    ),
]


@dataclass
class MattingModel:
    name: str
    sha256: str
    model: object
    device: object

    def predict(self, rgb, tri):
        """(B, 3, H, W) display RGB 0..1 and (B, 1, H, W) trimap 0..1 on the device -> (B, H, W) alpha."""
        import torch
        import torch.nn.functional as F

        h, w = rgb.shape[-2:]
        x = torch.cat([(rgb - 0.5) / 0.5, tri], 1)
        x = F.pad(x, (0, -w % PAD, 0, -h % PAD))
        if self.device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            with torch.autocast("cuda", dtype=dtype):
                alphas = self.model(pixel_values=x).alphas
        else:
            alphas = self.model(pixel_values=x).alphas
        return alphas[:, 0, :h, :w].float()


def load_matting_model(name: str, folder: Optional[str] = None, device=None) -> MattingModel:
    """ViTMatte by catalogue name from the cache (verified), or from `folder`; on `device` (a torch.device or its
    name)."""
    import torch

    from mattebridge.core.engine.transformers_tracker import require_transformers

    if folder:
        if not os.path.isdir(folder):
            raise MatteBridgeError(f"--matte-model {folder}: a matting model is a folder (config.json, safetensors)")
        manifest = catalog.write_manifest_in_memory(folder)
        label = os.path.basename(os.path.normpath(folder))
    else:
        e = catalog.entry(name)
        if e.engine != "matting":
            raise MatteBridgeError(f"--matte-model {name}: not a matting model (see `mattebridge models list`)")
        folder = catalog.model_dir(name)
        if not catalog.present(name):
            raise MatteBridgeError(
                f"--edge matte needs the matting model {name}: run `mattebridge models download {name}`, "
                f"or give --matte-model DIR"
            )
        manifest = catalog.verify_folder(folder)
        label = name
    transformers = require_transformers(folder)
    try:
        model = transformers.VitMatteForImageMatting.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise MatteBridgeError(f"{folder}: not a ViTMatte model ({str(e).strip().splitlines()[0][:200]})") from None
    device = torch.device(device if device is not None else "cpu")  # a name too ("cuda:0": the server's cache key)
    alpha_head_in_float32(model)
    return MattingModel(label, catalog.weights_sha256(manifest), model.eval().to(device), device)


def alpha_head_in_float32(model) -> None:
    """ViTMatte's alpha head (two small convolutions) outside autocast, on float32 features, so its sigmoid is
    float32 too: in bf16 alpha would step by 1/256 near 1, coarser than the half EXR it is written to."""
    import torch

    head = model.decoder.matting_head
    forward = head.forward

    def in_float32(hidden_state):
        with torch.autocast(hidden_state.device.type, enabled=False):
            return forward(hidden_state.float())

    head.forward = in_float32  # the instance's own: its weights, names and state dict stay transformers'
