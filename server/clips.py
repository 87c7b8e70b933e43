"""A client's clips on the server: where frames come from, their prompts, previews and propagation jobs.

Everything here runs on the one GPU worker thread, so it needs no locks of its own (a clip's model feed reads
plates on its own threads, through `ServerClip.read`).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import numpy as np

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.image.plate import Geometry, Plate
from mattebridge.core.matte.alpha import alpha_from_logits
from mattebridge.core.matte.refine import Guide
from mattebridge.core.paths import PathPolicy
from mattebridge.core.track.clip import PreparedClip, engine_prompt, prepare_clip, resolve_transform
from mattebridge.core.track.job import TrackJob, check_job
from mattebridge.core.track.run import TrackRun, refine_device
from mattebridge.core.wire.prompts import FramePrompt, Point, Prompts, check_frame_prompt, check_object_name
from mattebridge.core.wire.protocol import ProtocolError, check_window, field_of, unpack_array
from mattebridge.core.wire.sequence import FrameRange
from mattebridge.core.wire.vocabulary import EDGE_MODES

from .access import Roots
from .limits import FEATURE_CACHE_MB


def feature_bytes(features) -> int:
    """Bytes held by one frame's image features as sam2 caches them (tensors in tuples, lists and dicts), each
    storage counted once."""
    storages, stack = {}, [features]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif hasattr(item, "untyped_storage"):
            storage = item.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


class FeatureCache:
    """The image encoder's output for clicked frames, server-wide: (clip id, frame index) -> sam2's cached
    features, the least recently clicked dropped first once they hold more than `budget` bytes (on the model's
    device). A second click on a frame runs no encoder."""

    def __init__(self, budget: int):
        self.budget = budget
        self.bytes = 0
        self._entries: "OrderedDict[Tuple[str, int], tuple]" = OrderedDict()  # key -> (features, bytes)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Tuple[str, int]):
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: Tuple[str, int], features) -> None:
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        size = feature_bytes(features)
        if size > self.budget:  # a frame larger than the whole budget is not kept
            return
        self._entries[key] = (features, size)
        self.bytes += size
        while self.bytes > self.budget:
            _, (_, freed) = self._entries.popitem(last=False)
            self.bytes -= freed

    def drop(self, clip_id: str) -> None:
        """A clip's features, after new pixels or when it closes."""
        for key in [k for k in self._entries if k[0] == clip_id]:
            self.bytes -= self._entries.pop(key)[1]


def file_error(e: MatteBridgeError) -> ProtocolError:
    """A core error about a file -> the matching error reply code (errors that know theirs keep it)."""
    text = str(e)
    code = getattr(e, "code", None) or ("not_found" if ("missing" in text or "not found" in text) else "bad_file")
    return ProtocolError(code, text)


class ServerClip:
    def __init__(
        self,
        clip_id: str,
        owner: bytes,
        prepared: PreparedClip,
        paths: PathPolicy,
        inline: Optional[dict] = None,
        features: Optional[FeatureCache] = None,
    ):
        self.id, self.owner, self.prepared, self.paths = clip_id, owner, prepared, paths
        self.inline = inline  # frame -> Plate for clips whose pixels arrive with put_frame
        self.stamps: Dict[int, str] = {}
        self.prompts = Prompts()
        self.job: Optional[TrackRun] = None
        self._feed = None
        self.features = features if features is not None else FeatureCache(FEATURE_CACHE_MB << 20)
        self._plate: Optional[Tuple[int, Plate]] = None  # the last previewed frame's plate (its soft edge)
        self._guide = None  # (frame, refine.Guide): that plate as the soft edge on the CPU sees it, for the next click
        self._tmp = None  # mask prompts sent as buffers are kept here as EXRs
        self._masks = 0  # how many were written: each gets a name of its own
        self.layer: Optional[str] = None

    @property
    def frames(self) -> FrameRange:
        return self.prepared.frames

    def describe(self) -> dict:
        t = self.prepared.transform
        return {
            "clip": self.id,
            "frames": [self.frames.first, self.frames.last],
            "inline": self.inline is not None,
            "geometry": {str(f): g.to_json() for f, g in self.prepared.geometry.items()},
            "colorspace": t.colorspace,
            "display": t.display,
            "view": t.view,
            "config": t.config_source,
        }

    def frame_index(self, content: dict) -> int:
        frame = field_of(content, "frame", int)
        if frame not in self.frames:
            raise ProtocolError("bad_field", f"frame {frame}: outside the clip's range {self.frames}")
        if self.inline is not None and frame not in self.inline:
            raise ProtocolError("not_found", f"frame {frame}: not sent yet (put_frame)")
        return frame - self.frames.first

    # --- inline pixels --------------------------------------------------------------------------
    def put_frame(self, frame: int, rgb: np.ndarray, geometry: Geometry, stamp: str) -> None:
        """`rgb`: the frame as the one float32 RGB copy the server keeps (shm.to_rgb32); `stamp`: a hash of the
        pixels as sent (resume)."""
        self.inline[frame] = Plate(f"inline:{self.id}:{frame}", rgb, geometry, "", True)
        self.stamps[frame] = stamp
        self.prepared.geometry[frame] = geometry
        self.invalidate()

    def invalidate(self) -> None:
        """New pixels: cached model input, features and plate are stale."""
        if self._feed is not None:
            self._feed.close()
        self._feed, self._plate, self._guide = None, None, None
        self.features.drop(self.id)

    def read(self, frame: int) -> Plate:
        """The frame's plate: the last previewed one from memory, any other decoded (the feed's threads too)."""
        kept = self._plate
        return kept[1] if kept is not None and kept[0] == frame else self.prepared.read(frame)

    def _pinned(self, frame: int) -> Plate:
        """The frame's plate, kept as the last previewed one."""
        plate = self.read(frame)
        self._plate = (frame, plate)
        return plate

    # --- previews -------------------------------------------------------------------------------
    def feed(self, model):
        from mattebridge.core.engine.feed import ModelFeed

        if self._feed is None:
            self._feed = ModelFeed(
                list(self.frames),
                self.read,
                model.image_size,
                self.prepared.transform,
                ahead=1,
                workers=1,
                device=model.device,
            )
        return self._feed

    def preview(self, model, index: int, obj: str, fp: FramePrompt, edge: str):
        """That frame's matte for `obj` as `track` computes it on its first prompted frame: a fresh state
        each time (so a repeated click gives the same matte). The frame's image features come from the
        server's FeatureCache when it holds them, and a soft edge refines against the kept plate: a second
        click on a frame decodes nothing and runs no image encoder; on the CPU what the soft edge derives from the
        plate alone (refine.Guide) is kept with it."""
        frame = self.frames.first + index
        geometry = self.prepared.geometry[frame]
        prompt = engine_prompt(fp, geometry, frame, self.paths)
        tracker = model.tracker(self.feed(model), len(self.frames))
        key = (self.id, index)
        cached = self.features.get(key)
        if cached is not None:
            tracker.reuse_image_features(index, cached)
        plate = self._pinned(frame) if edge == "soft" else None  # before the feed reads it: decoded once
        result = tracker.add_prompt(index, obj, prompt)
        computed = tracker.image_features(index)
        if computed is not None:
            self.features.put(key, computed)
        device = refine_device(model.device)
        guide = plate.pixels if plate else None
        if plate is not None and device is None:  # on the CPU: what the edge derives from the plate alone, kept
            if self._guide is None or self._guide[0] != frame:
                self._guide = (frame, Guide(plate.pixels))
            guide = self._guide[1]
        alpha = alpha_from_logits(result.logits[obj], geometry, edge, guide, device)
        return alpha, geometry, finite_or_none(result.scores.get(obj)), finite_or_none((result.ious or {}).get(obj))

    def mask_file(self, frame: int, obj: str, mask: np.ndarray) -> str:
        """A mask sent as a buffer, kept as an EXR so the prompts JSON can refer to it."""
        from mattebridge.core.image.matte_io import write_matte

        if self._tmp is None:  # inside the server's private folder, which only it can reach
            self._tmp = tempfile.mkdtemp(prefix=f"clip-{self.id}-", dir=self.paths.scratch)
        w, h = self.prepared.geometry[frame].display_size
        if mask.shape[:2] != (h, w):
            raise ProtocolError(
                "bad_buffer", f"mask: {mask.shape[1]}x{mask.shape[0]} but frame {frame}'s display window is {w}x{h}"
            )
        values = mask.astype(np.float32)
        values = values[..., -1] if values.ndim == 3 else values
        if mask.dtype.kind == "u":
            values /= np.iinfo(mask.dtype).max
        # A new name each time: the prompt it replaces keeps its own file until this one is accepted (a refused
        # prompt leaves the clip's prompts, their masks included, as they were); see drop_mask_file.
        self._masks += 1
        path = os.path.join(self._tmp, f"{obj}.{frame}.{self._masks}.exr")
        write_matte(path, {"A": values}, Geometry((0, 0, w, h), (0, 0, w, h)), {"object": obj})
        return path

    def drop_mask_file(self, fp: Optional[FramePrompt]) -> None:
        """Delete `fp`'s mask file if mask_file wrote it (a refused prompt's, or one a new prompt replaced)."""
        if fp is not None and fp.mask is not None and self._tmp and os.path.dirname(fp.mask) == self._tmp:
            try:
                os.unlink(fp.mask)
            except OSError:
                pass

    # --- propagation ------------------------------------------------------------------------------
    def start_job(self, model, job: TrackJob, keep_mattes: bool) -> TrackRun:
        self.job = TrackRun(job, self.prepared, model, keep_mattes, self.paths)
        return self.job

    def close(self) -> None:
        if self.job is not None:
            self.job.close()
            self.job = None
        self.invalidate()
        self.inline = {} if self.inline is not None else None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


def open_clip(
    clip_id: str,
    owner: bytes,
    content: dict,
    roots: Roots,
    check_geometry=None,
    features: Optional[FeatureCache] = None,
) -> ServerClip:
    """`check_geometry(frame, geometry)`: the server's frame-size limits, on each plate header before pixels;
    `features`: the server's image-feature cache (a clip of its own by default)."""
    frames_text = field_of(content, "frames", str)
    try:
        frames = FrameRange.parse(frames_text)
    except MatteBridgeError as e:
        raise ProtocolError("bad_field", f"frames: {e}") from None
    if len(frames) > 1_000_000:
        raise ProtocolError("bad_field", f"frames: {frames} is more than a million frames")
    layer = field_of(content, "layer", str, None)
    colorspace = field_of(content, "colorspace", str, None)
    ocio = field_of(content, "ocio", str, None)
    view = field_of(content, "view", str, None)
    source = field_of(content, "source", str, "files")
    try:
        if source == "files":
            pattern = field_of(content, "pattern", str)
            prepared = prepare_clip(
                pattern,
                frames,
                layer=layer,
                colorspace=colorspace,
                ocio=ocio,
                view=view,
                paths=roots,
                check_geometry=check_geometry,
            )
            clip = ServerClip(clip_id, owner, prepared, roots, features=features)
            clip.layer = layer
            return clip
        if source == "inline":
            store: Dict[int, Plate] = {}
            probe = Plate("", np.zeros((1, 1, 3), np.float32), Geometry((0, 0, 1, 1), (0, 0, 1, 1)), "", True)
            transform = resolve_transform(probe, colorspace=colorspace, ocio=ocio, view=view, paths=roots)
            clip = ServerClip(clip_id, owner, None, roots, store, features)
            clip.prepared = PreparedClip(
                frames, {}, transform, lambda f: store[f], lambda f: clip.stamps[f], f"inline:{clip_id}"
            )
            return clip
    except MatteBridgeError as e:
        if isinstance(e, ProtocolError):
            raise
        raise file_error(e) from None
    raise ProtocolError("bad_field", f"source: {source!r} (expected files or inline)")


def finite_or_none(value):
    """A score or IoU for the wire: None (JSON null) where the model gave NaN or an infinity, which JSON cannot
    carry (protocol.encode refuses them)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def finite_scores(values: Optional[dict]) -> Optional[dict]:
    """object -> score, each through finite_or_none."""
    return None if values is None else {k: finite_or_none(v) for k, v in values.items()}


def _coordinate(value, name: str) -> float:
    """A JSON number as a float: an integer too large for one (10**400 parses as an int) is refused, not a crash."""
    try:
        return float(value)
    except OverflowError:
        raise ProtocolError("bad_field", f"{name}: {str(value)[:24]}... is too large") from None


def prompt_from_content(clip: ServerClip, frame: int, content: dict, buffers) -> FramePrompt:
    try:  # first: the name becomes a file name below
        obj = check_object_name(field_of(content, "object", str))
    except MatteBridgeError as e:
        raise ProtocolError("bad_field", f"object: {e}") from None
    fp = FramePrompt()
    points = field_of(content, "points", list, [])
    for i, p in enumerate(points):
        if (
            not isinstance(p, list)
            or len(p) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p[:2])
            or not isinstance(p[2], bool)
        ):
            raise ProtocolError("bad_field", f"points[{i}]: expected [x, y, positive] (numbers, boolean)")
        fp.points.append(Point(_coordinate(p[0], f"points[{i}]"), _coordinate(p[1], f"points[{i}]"), p[2]))
    box = field_of(content, "box", list, None)
    if box is not None:
        if (
            len(box) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
            or box[2] <= box[0]
            or box[3] <= box[1]
        ):
            raise ProtocolError("bad_field", "box: expected [x0, y0, x1, y1] with x1 > x0 and y1 > y0")
        fp.box = tuple(_coordinate(v, "box") for v in box)
    mask = content.get("mask")
    if mask is not None:
        if fp.points or fp.box is not None:
            raise ProtocolError("bad_field", "mask: cannot be combined with points or a box on one frame")
        if isinstance(mask, str):
            if not os.path.exists(clip.paths.read(mask, "mask")):  # the roots first: no probing for files
                raise ProtocolError("not_found", f"mask: {mask} not found")
            fp.mask = mask
        else:
            fp.mask = clip.mask_file(frame, obj, unpack_array(mask, buffers, "mask", ndim=(2,)))
    if not fp.points and fp.box is None and fp.mask is None:
        raise ProtocolError("bad_field", "prompt: give points, a box or a mask (to remove a prompt, send clear)")
    try:  # the rule propagate applies (Prompts.check): a prompt accepted here is never refused there
        check_frame_prompt(fp, *clip.prepared.geometry[frame].display_size, f"object {obj!r}, frame {frame}")
    except MatteBridgeError as e:
        raise ProtocolError("bad_field", str(e)) from None
    return fp


def geometry_from_content(content: dict, shape) -> Geometry:
    """The sent frame's geometry; `shape`: the pixels' (h, w, ...), the data window's size by default."""
    h, w = shape[:2]
    doc = content.get("geometry") or {}
    if not isinstance(doc, dict):
        raise ProtocolError("bad_field", "geometry: expected {display, data, pixel_aspect}")
    data = check_window(doc.get("data", [0, 0, w, h]), "geometry.data")
    display = check_window(doc.get("display", list(data)), "geometry.display")
    aspect = doc.get("pixel_aspect", 1.0)
    if not isinstance(aspect, (int, float)) or isinstance(aspect, bool) or not 0.01 <= aspect <= 100:
        raise ProtocolError("bad_field", "geometry.pixel_aspect: expected a number in 0.01..100")
    return Geometry(display, data, float(aspect))


def job_from_content(clip: ServerClip, content: dict, roots: Roots) -> TrackJob:
    prompts = clip.prompts
    if content.get("prompts") is not None:
        try:
            prompts = Prompts.from_json(field_of(content, "prompts", dict), "prompts")
        except MatteBridgeError as e:
            raise ProtocolError("bad_field", str(e)) from None
        # Not yet the clip's: the worker keeps them once the job has started (a refused one leaves the clip's
        # prompts as they were). Mask paths are checked against the roots when they are opened.
    out = field_of(content, "out", str, None)
    buffers = field_of(content, "buffers", bool, False)
    if out is None and not buffers:
        raise ProtocolError("bad_field", "propagate: nothing to return (give out, buffers: true, or both)")
    edge = field_of(content, "edge", str, "soft")
    if edge not in EDGE_MODES:
        raise ProtocolError("bad_field", f"edge: {edge!r} (expected one of {', '.join(EDGE_MODES)})")
    fill = field_of(content, "fill_holes", int, 0)
    if fill < 0:
        raise ProtocolError("bad_field", "fill_holes: expected a number of pixels >= 0")
    t = clip.prepared.transform
    job = TrackJob(
        plate=clip.prepared.source,
        frames=clip.frames,
        prompts=prompts,
        out=out,
        layer=clip.layer,
        direction=field_of(content, "direction", str, "both"),
        edge=edge,
        fill_holes=fill,
        stabilize=field_of(content, "stabilize", bool, None),
        layout=field_of(content, "layout", str, "files"),
        report=field_of(content, "report", str, None),
        cutout=field_of(content, "cutout", str, None),
        foreground=field_of(content, "foreground", str, None),
        matte_tile=field_of(content, "matte_tile", int, 512),
        channels=field_of(content, "channels", str, "A"),
        force=field_of(content, "force", bool, False),
        colorspace=t.colorspace,
        view=f"{t.display}/{t.view}",
    )
    if clip.inline is not None:  # before the prompts are checked against the frames' geometry
        missing = [f for f in clip.frames if f not in clip.inline]
        if missing:
            raise ProtocolError(
                "not_found",
                f"frames not sent yet (put_frame): {missing[0]}"
                + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""),
            )
    try:
        check_job(job)
        prompts.check(clip.frames, lambda f: clip.prepared.geometry[f].display_size)
    except MatteBridgeError as e:
        raise ProtocolError("bad_field", str(e)) from None
    return job
