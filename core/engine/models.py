"""SAM 2.1 checkpoints: the published ones (download, verify, cache) and building a predictor from one."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from typing import Optional

from mattebridge.core.engine import patches
from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.paths import plain_mode

META_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
# Corrections stay in force (docs/architecture.md §5), and attention over conditioning frames stays bounded.
MAX_COND_FRAMES_IN_ATTN = 8


@dataclass(frozen=True)
class ModelInfo:
    name: str
    config: str  # short sam2 config name
    sha256: str
    size: int


MODELS = {
    m.name: m
    for m in (
        ModelInfo(
            "sam2.1_hiera_tiny",
            "sam2.1_hiera_t",
            "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
            156008466,
        ),
        ModelInfo(
            "sam2.1_hiera_small",
            "sam2.1_hiera_s",
            "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38",
            184416285,
        ),
        ModelInfo(
            "sam2.1_hiera_base_plus",
            "sam2.1_hiera_b+",
            "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5",
            323606802,
        ),
        ModelInfo(
            "sam2.1_hiera_large",
            "sam2.1_hiera_l",
            "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318",
            898083611,
        ),
    )
}


def model_info(name: str) -> ModelInfo:
    if name not in MODELS:
        raise MatteBridgeError(f"unknown model {name!r}; models: {', '.join(MODELS)}")
    return MODELS[name]


def cache_dir() -> str:
    if os.environ.get("MATTEBRIDGE_MODELS"):
        return os.environ["MATTEBRIDGE_MODELS"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mattebridge", "models")


def model_path(name: str) -> str:
    return os.path.join(cache_dir(), model_info(name).name + ".pt")


def model_url(name: str) -> str:
    base = os.environ.get("MATTEBRIDGE_MODEL_BASE_URL", META_BASE_URL)
    return base.rstrip("/") + "/" + model_info(name).name + ".pt"


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_cached(path: str, info: "ModelInfo") -> None:
    """A cached published checkpoint is the published file: its SHA-256, checked at every load (~0.2 s a GB)."""
    digest = sha256_of(path)
    if digest != info.sha256:
        raise MatteBridgeError(
            f"{path}: SHA-256 {digest[:12]}… is not the published {info.name}'s ({info.sha256[:12]}…); "
            f"delete it and run: mattebridge models download {info.name}"
        )


def download(name: str, progress=None) -> str:
    """Fetch a published checkpoint into the cache; verify its SHA-256 before it takes its final name."""
    info = model_info(name)
    dest = model_path(name)
    if os.path.exists(dest):
        check_cached(dest, info)
        return dest
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    url = model_url(name)
    fd, tmp = tempfile.mkstemp(prefix="." + info.name, suffix=".part", dir=os.path.dirname(dest))
    os.fchmod(fd, plain_mode())  # a shared cache: readable as the umask says, like any file made here
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or info.size)
            done = 0
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                digest.update(block)
                done += len(block)
                if progress:
                    progress(done, total)
        if digest.hexdigest() != info.sha256:
            raise MatteBridgeError(
                f"{url}: SHA-256 mismatch (got {digest.hexdigest()}, expected {info.sha256}); "
                f"the download was discarded"
            )
        os.replace(tmp, dest)
        return dest
    except urllib.error.HTTPError as e:
        raise MatteBridgeError(f"{url}: download failed (HTTP {e.code} {e.reason})") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise MatteBridgeError(f"{url}: download failed ({reason})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def config_path(name: str) -> str:
    """A short name (`sam2.1_hiera_t`) or a sam2 config path (`configs/sam2.1/sam2.1_hiera_t.yaml`)."""
    import sam2

    root = os.path.dirname(sam2.__file__)
    if name.endswith(".yaml"):
        rel = name
    else:
        family = "sam2.1" if name.startswith("sam2.1") else "sam2"
        rel = f"configs/{family}/{name}.yaml"
    if not os.path.exists(os.path.join(root, rel)):
        raise MatteBridgeError(
            f"model config {name!r}: no such sam2 config "
            f"(e.g. sam2.1_hiera_t, sam2.1_hiera_s, sam2.1_hiera_b+, sam2.1_hiera_l)"
        )
    return rel


def resolve_device(name: str = "auto"):
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise MatteBridgeError(f"--device {name!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MatteBridgeError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise MatteBridgeError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise MatteBridgeError("--device mps: Metal is not available on this machine")
    return device


def build_model(config: str, image_size: Optional[int] = None, device="cpu", compile: bool = False):
    """A SAM2VideoPredictor with our overrides and random weights (load_checkpoint fills them).

    `compile`: sam2's own compiled predictor (`vos_optimized`: torch.compile of the image encoder, memory
    attention, memory encoder, prompt encoder and mask decoder; kernels are built on the first frames)."""
    from sam2.build_sam import build_sam2_video_predictor

    overrides = [
        "++model.add_all_frames_to_correct_as_cond=true",
        f"++model.max_cond_frames_in_attn={MAX_COND_FRAMES_IN_ATTN}",
    ]
    if image_size is not None:  # 0 is a mistake, not "the default"
        if image_size % 32 or image_size < 64:
            raise MatteBridgeError(f"--image-size {image_size}: must be a multiple of 32, at least 64")
        overrides.append(f"++model.image_size={image_size}")
    patches.install()
    with contextlib.redirect_stdout(sys.stderr):  # sam2 prints its compile notices; stdout belongs to callers
        predictor = build_sam2_video_predictor(
            config_path(config), None, device="cpu", hydra_overrides_extra=overrides, vos_optimized=compile
        )
    predictor.fill_hole_area = 0  # needs sam2._C; mattebridge fills holes itself
    patches.attend_in_model_dtype(predictor)
    return predictor.to(device)


def check_compile(device) -> None:
    """`--compile` needs what torch.compile's GPU code generation needs: a CUDA device and Triton. Elsewhere it is
    refused rather than ignored (on a CPU it would spend minutes compiling for little gain)."""
    import importlib.util

    if device.type != "cuda":
        raise MatteBridgeError(f"--compile: needs a CUDA device (this run's device is {device}); run without --compile")
    if importlib.util.find_spec("triton") is None:
        raise MatteBridgeError("--compile: needs Triton (pip install triton, matching torch); run without --compile")


def load_checkpoint(predictor, path: str) -> None:
    import torch

    if not os.path.exists(path):
        raise MatteBridgeError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # its advice is to unpickle untrusted data: never
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MatteBridgeError(f"{path}: not a loadable weights-only checkpoint ({first[:200]})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise MatteBridgeError(f"{path}: checkpoint has no 'model' state dict")
    try:
        missing, unexpected = predictor.load_state_dict(state["model"], strict=False)
    except RuntimeError as e:
        raise MatteBridgeError(
            f"{path}: weights do not fit the model config ({str(e).splitlines()[0][:200]})"
        ) from None
    if missing or unexpected:
        raise MatteBridgeError(
            f"{path}: weights do not fit the model config ({len(missing)} missing, "
            f"{len(unexpected)} unexpected tensors, "
            f"e.g. {(list(missing) + list(unexpected))[0]})"
        )


def save_random_checkpoint(path: str, config: str = "sam2.1_hiera_t", seed: int = 0) -> str:
    """A seeded random-weight checkpoint: the stand-in for real weights where none can be downloaded."""
    import torch

    torch.manual_seed(seed)
    predictor = build_model(config)
    torch.save({"model": predictor.state_dict()}, path)
    return path


def describe_progress(done: int, total: int) -> None:
    sys.stderr.write(f"\r  {done / 1e6:7.1f} / {total / 1e6:.1f} MB")
    sys.stderr.flush()


@dataclass
class LoadedModel:
    """SAM 2.1 through the sam2 package (interface.Engine); core/engine/catalog.py loads the others."""

    name: str
    sha256: str
    predictor: object
    device: object
    family: str = "sam2.1"

    @property
    def image_size(self) -> int:
        return self.predictor.image_size

    @property
    def mask_size(self) -> int:
        return self.predictor.image_size // 4

    def tracker(self, images, num_frames: int):
        from mattebridge.core.engine.tracker import StreamingTracker

        return StreamingTracker(self.predictor, images, num_frames, self.device)


def load_model(
    name: str = "sam2.1_hiera_small",
    checkpoint: Optional[str] = None,
    config: Optional[str] = None,
    image_size: Optional[int] = None,
    device: str = "auto",
    compile: bool = False,
) -> LoadedModel:
    """A published model from the cache by name, or `checkpoint` with `config`, ready on `device`; `compile`:
    sam2's compiled predictor (CUDA only, see check_compile). Trackers of other families (a transformers
    model by catalogue name, or a local model folder as `checkpoint`) load through core/engine/catalog.py."""
    from mattebridge.core.engine import catalog

    if (checkpoint and os.path.isdir(checkpoint)) or (
        not checkpoint and name in catalog.catalogue() and catalog.entry(name).engine == "transformers"
    ):
        if compile:
            raise MatteBridgeError(f"--compile: only for the SAM 2.1 models of the sam2 package, not {name}")
        return catalog.load_engine(name, checkpoint, device)
    if checkpoint:
        if not config:
            raise MatteBridgeError("--checkpoint needs --model-config (e.g. sam2.1_hiera_t)")
        label, path = os.path.basename(checkpoint), checkpoint
        if not os.path.exists(path):
            raise MatteBridgeError(f"{path}: checkpoint not found")
        digest = sha256_of(path)
    else:
        info = model_info(name)
        label, path, config, digest = info.name, model_path(name), config or info.config, info.sha256
        if not os.path.exists(path):
            raise MatteBridgeError(f"model {name} is not downloaded; run: mattebridge models download {name}")
        check_cached(path, info)  # the identity mattes and resume keys carry is the file's, checked
    target = resolve_device(device)
    if compile:
        check_compile(target)  # before the weights load: a refused flag fails at once
    predictor = build_model(config, image_size, compile=compile)
    load_checkpoint(predictor, path)
    return LoadedModel(label, digest, predictor.to(target), target)
