"""Every model mattebridge can run: family, size, licence, source, whether it is here; downloads of the
transformers trackers through huggingface_hub, pinned to a commit and verified; local copies (--checkpoint DIR).

The SAM 2.1 checkpoints stay where core/engine/models.py keeps them. A hub model is downloaded into the same
cache, as `<cache>/<name>/` with a `mattebridge.json` manifest: the commit it came from and each file's
SHA-256, checked against the hub's own record for that commit before the folder takes its name, and again (size
and hash of the weights) whenever it is loaded. Where the catalogue names no commit, the one `main` points to at
download time is resolved once and recorded, so every later load and every matte header names that commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from mattebridge.core.engine import models
from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.paths import plain_mode

MANIFEST = "mattebridge.json"
HUB_FILES = ["*.json", "*.safetensors"]  # config, processor settings, weights; never pickles


@dataclass(frozen=True)
class CatalogEntry:
    name: str  # what --model takes
    family: str
    engine: str  # "sam2" (the sam2 package), "transformers" (a tracker) or "matting" (`--edge matte`)
    licence: str
    source: str
    size: str  # published size
    repo: Optional[str] = None  # hub repository (transformers engines)
    revision: Optional[str] = None  # pinned commit; None: resolved at download and recorded in the manifest
    model_type: Optional[str] = None  # the transformers video class to load the repo's weights into
    gated: bool = False


def _sam2_entries() -> List[CatalogEntry]:
    params = {"tiny": "38.9M", "small": "46M", "base_plus": "80.8M", "large": "224.4M"}
    return [
        CatalogEntry(
            m.name,
            "sam2.1",
            "sam2",
            "Apache-2.0",
            models.META_BASE_URL + m.name + ".pt",
            f"{params[m.name.rsplit('_hiera_', 1)[1]]} params, {m.size / 1e6:.0f} MB",
        )
        for m in models.MODELS.values()
    ]


HUB_ENTRIES = [
    CatalogEntry(
        "sam3-tracker",
        "sam3-tracker",
        "transformers",
        "SAM License (Meta); gated: accept it on the hub, set HF_TOKEN",
        "https://huggingface.co/facebook/sam3",
        "848M params (whole SAM 3; the tracker loads its part)",
        repo="facebook/sam3",
        model_type="sam3_tracker_video",
        gated=True,
    ),
    CatalogEntry(
        "edgetam",
        "edgetam",
        "transformers",
        "Apache-2.0",
        "https://huggingface.co/yonigozlan/EdgeTAM-hf",
        "on-device SAM 2 variant (RepViT backbone, needs timm)",
        repo="yonigozlan/EdgeTAM-hf",
        model_type="edgetam_video",
    ),
    CatalogEntry(
        "sam2.1-hf-tiny",
        "sam2.1 (transformers)",
        "transformers",
        "Apache-2.0",
        "https://huggingface.co/facebook/sam2.1-hiera-tiny",
        "38.9M params",
        repo="facebook/sam2.1-hiera-tiny",
        model_type="sam2_video",
    ),
    CatalogEntry(
        "sam2.1-hf-large",
        "sam2.1 (transformers)",
        "transformers",
        "Apache-2.0",
        "https://huggingface.co/facebook/sam2.1-hiera-large",
        "224.4M params",
        repo="facebook/sam2.1-hiera-large",
        model_type="sam2_video",
    ),
]


def catalogue() -> Dict[str, CatalogEntry]:
    from mattebridge.core.engine.matting_model import MATTING_ENTRIES  # `--edge matte`'s models (engine "matting")

    return {e.name: e for e in _sam2_entries() + HUB_ENTRIES + MATTING_ENTRIES}


def entry(name: str) -> CatalogEntry:
    found = catalogue().get(name)
    if found is None:
        raise MatteBridgeError(f"unknown model {name!r}; models: {', '.join(catalogue())}")
    return found


def model_dir(name: str) -> str:
    return os.path.join(models.cache_dir(), entry(name).name)


def present(name: str) -> bool:
    e = entry(name)
    if e.engine == "sam2":
        return os.path.exists(models.model_path(name))
    return os.path.exists(os.path.join(model_dir(name), MANIFEST))


def listing() -> List[dict]:
    """One row per model for `mattebridge models list` and the server's hello."""
    return [
        {
            "name": e.name,
            "family": e.family,
            "engine": e.engine,
            "size": e.size,
            "licence": e.licence,
            "source": e.source,
            "present": present(e.name),
        }
        for e in catalogue().values()
    ]


def write_manifest(folder: str, repo: str, revision: str) -> dict:
    """Record the commit and every file's size and SHA-256 (the identity a matte header carries)."""
    files = {}
    for root, _, names in os.walk(folder):
        for n in sorted(names):
            path = os.path.join(root, n)
            rel = os.path.relpath(path, folder)
            if rel != MANIFEST:
                files[rel] = {"size": os.path.getsize(path), "sha256": models.sha256_of(path)}
    manifest = {"repo": repo, "revision": revision, "files": files}
    with open(os.path.join(folder, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    return manifest


def weights_sha256(manifest: dict) -> str:
    """One digest over the weights files (sorted by name): the model's identity in headers and hello."""
    digest = hashlib.sha256()
    for rel in sorted(manifest["files"]):
        if rel.endswith(".safetensors"):
            digest.update(f"{rel}:{manifest['files'][rel]['sha256']}\n".encode())
    return digest.hexdigest()


def verify_folder(folder: str) -> dict:
    """The manifest of a downloaded model, after checking every file it lists is still the one recorded."""
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise MatteBridgeError(f"{path}: unreadable manifest ({e}); download the model again") from None
    for rel, want in manifest["files"].items():
        file = os.path.join(folder, rel)
        if not os.path.exists(file) or os.path.getsize(file) != want["size"]:
            raise MatteBridgeError(f"{file}: missing or changed since download; download the model again")
        if rel.endswith(".safetensors") and models.sha256_of(file) != want["sha256"]:
            raise MatteBridgeError(f"{file}: SHA-256 differs from the download's; download the model again")
    return manifest


def check_against_hub(folder: str, expected: Dict[str, Optional[str]]) -> None:
    """`expected`: file -> the hub's SHA-256 for it at the pinned commit (LFS files; None for small files,
    which the hub addresses by git blob and the pinned commit already fixes)."""
    for rel, sha in expected.items():
        file = os.path.join(folder, rel)
        if not os.path.exists(file):
            raise MatteBridgeError(f"{rel}: not downloaded")
        if sha is not None and models.sha256_of(file) != sha:
            raise MatteBridgeError(f"{rel}: SHA-256 mismatch with the hub's record; the download was discarded")


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise MatteBridgeError(
            "downloading hub models needs huggingface_hub; install the trackers extra: pip install "
            "'mattebridge[trackers]'"
        ) from None
    return huggingface_hub


def download(name: str, revision: Optional[str] = None, log: Callable[[str], None] = lambda s: None) -> str:
    """Fetch a model into the cache (token from HF_TOKEN for gated ones) and verify it; the folder's path."""
    e = entry(name)
    if e.engine == "sam2":
        return models.download(name)
    dest = model_dir(name)
    if os.path.exists(os.path.join(dest, MANIFEST)):
        verify_folder(dest)
        return dest
    hub = _hub()
    token = os.environ.get("HF_TOKEN") or None
    api = hub.HfApi()
    try:
        info = api.model_info(e.repo, revision=revision or e.revision or "main", files_metadata=True, token=token)
    except Exception as err:  # the hub's errors are many types; the message is what the user needs
        gated = " (gated: accept the licence on the hub and set HF_TOKEN)" if e.gated else ""
        raise MatteBridgeError(f"{e.repo}: cannot reach the model{gated}: {str(err).splitlines()[0][:200]}") from None
    commit = info.sha
    wanted = {
        s.rfilename: (s.lfs.sha256 if s.lfs else None)
        for s in info.siblings
        if any(_matches(s.rfilename, p) for p in HUB_FILES)
    }
    if not any(f.endswith(".safetensors") for f in wanted):
        raise MatteBridgeError(f"{e.repo}@{commit}: no safetensors weights in the repository")
    log(f"{e.repo} at {commit}: {len(wanted)} files")
    os.makedirs(models.cache_dir(), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{e.name}.", dir=models.cache_dir())
    try:
        hub.snapshot_download(e.repo, revision=commit, local_dir=tmp, allow_patterns=list(wanted), token=token)
        check_against_hub(tmp, wanted)
        write_manifest(tmp, e.repo, commit)
        shutil.rmtree(os.path.join(tmp, ".cache"), ignore_errors=True)
        os.chmod(tmp, plain_mode(folder=True))  # mkdtemp's 0700 would keep a shared cache's other users out
        os.replace(tmp, dest)
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _matches(name: str, pattern: str) -> bool:
    import fnmatch

    return "/" not in name and fnmatch.fnmatch(name, pattern)


@dataclass
class TransformersEngine:
    """A loaded transformers tracker (interface.Engine)."""

    name: str
    family: str
    sha256: str
    model: object
    device: object

    @property
    def image_size(self) -> int:
        return int(self.model.config.image_size)

    @property
    def mask_size(self) -> int:
        return int(self.model.prompt_encoder.mask_input_size[0])

    def tracker(self, images, num_frames: int):
        from mattebridge.core.engine.transformers_tracker import TransformersTracker

        return TransformersTracker(self.model, images, num_frames, self.device)


def load_engine(name: str, checkpoint: Optional[str] = None, device: str = "auto") -> TransformersEngine:
    """A transformers tracker by catalogue name (from the cache, verified) or from a local folder."""
    from mattebridge.core.engine.transformers_tracker import load_pretrained

    e = entry(name) if name in catalogue() and not checkpoint else None  # a local folder says what it is itself
    if checkpoint:
        if not os.path.isdir(checkpoint):
            raise MatteBridgeError(f"--checkpoint {checkpoint}: a transformers model is a folder (config, safetensors)")
        folder = checkpoint
        manifest = write_manifest_in_memory(folder)
    else:
        if e is None or e.engine != "transformers":
            raise MatteBridgeError(f"model {name!r} is not a transformers tracker")
        folder = model_dir(name)
        if not present(name):
            raise MatteBridgeError(f"model {name} is not downloaded; run: mattebridge models download {name}")
        manifest = verify_folder(folder)
    target = models.resolve_device(device)
    model = load_pretrained(folder, "cpu", model_type=e.model_type if e else None).to(target)
    family = e.family if e else model.config.model_type
    label = e.name if e and not checkpoint else os.path.basename(os.path.normpath(folder))
    return TransformersEngine(label, family, weights_sha256(manifest), model, target)


def write_manifest_in_memory(folder: str) -> dict:
    """A local copy's identity, computed (not written: the folder may be read-only)."""
    files = {}
    for n in sorted(os.listdir(folder)):
        path = os.path.join(folder, n)
        if n.endswith(".safetensors") and os.path.isfile(path):
            files[n] = {"size": os.path.getsize(path), "sha256": models.sha256_of(path)}
    if not files:
        raise MatteBridgeError(f"--checkpoint {folder}: no .safetensors weights in the folder")
    return {"files": files}
