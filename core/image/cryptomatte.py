"""Cryptomatte (spec v1.2, docs/cryptomatte.md): several objects' alphas as id/coverage ranks in one EXR.

Nuke 13+, Blender's compositor and Fusion decode these; each tracked object becomes one id.
"""

from __future__ import annotations

import json
import struct
from typing import Dict, Iterable, Mapping, Optional

import numpy as np

from mattebridge.core.errors import MatteBridgeError

_M32 = 0xFFFFFFFF


def _rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M32


def mm3_hash32(name: str, seed: int = 0) -> int:
    """MurmurHash3_x86_32 of the UTF-8 bytes of `name` (unsigned)."""
    data = name.encode("utf-8")
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & _M32
    body = len(data) - len(data) % 4
    for (k,) in struct.iter_unpack("<I", data[:body]):
        k = _rotl32((k * c1) & _M32, 15) * c2 & _M32
        h = (_rotl32(h ^ k, 13) * 5 + 0xE6546B64) & _M32
    tail = data[body:]
    if tail:
        k = int.from_bytes(tail, "little")
        h ^= _rotl32((k * c1) & _M32, 15) * c2 & _M32
    h ^= len(data)
    h = ((h ^ (h >> 16)) * 0x85EBCA6B) & _M32
    h = ((h ^ (h >> 13)) * 0xC2B2AE35) & _M32
    return h ^ (h >> 16)


def id_bits(name: str) -> int:
    """The id's float32 bit pattern: the hash, with bit 23 flipped where the exponent would make a
    denormal/zero (0) or an Inf/NaN (255), so every id is a normal float that survives arithmetic."""
    h = mm3_hash32(name)
    if (h >> 23) & 0xFF in (0, 0xFF):
        h ^= 1 << 23
    return h


def name_to_float(name: str) -> np.float32:
    return np.array([id_bits(name)], np.uint32).view(np.float32)[0]


def manifest(names: Iterable[str]) -> str:
    """JSON name -> 8 hex digits of the id's float bits (what decoders match pixels against)."""
    return json.dumps({n: f"{id_bits(n):08x}" for n in sorted(set(names))}, sort_keys=True)


def layer_key(layer_type: str) -> str:
    """The metadata key: first 7 hex digits of the type name's hash (the spec's suggested method;
    Blender does the same, so its files and ours agree on the key)."""
    return f"{mm3_hash32(layer_type):08x}"[:7]


def cryptomatte_metadata(layer_type: str, names: Iterable[str]) -> Dict[str, str]:
    prefix = f"cryptomatte/{layer_key(layer_type)}/"
    return {
        prefix + "name": layer_type,
        prefix + "hash": "MurmurHash3_32",
        prefix + "conversion": "uint32_to_float32",
        prefix + "manifest": manifest(names),
    }


def shared_coverage(alphas: np.ndarray) -> np.ndarray:
    """Per-object alphas (N, H, W) -> Cryptomatte coverages: how overlapping objects share a pixel.

    The tracker gives each object its own alpha, and where objects overlap those alphas add up to more
    than the pixel (two objects each 1 over the same pixel). Cryptomatte coverages are fractions of one
    pixel's samples, so they must add up to at most 1. The pixel's total coverage is taken as
    min(1, sum of alphas) -- the same union the cutout's alpha uses -- and split in proportion:

        coverage_i = alpha_i                   where sum(alpha) <= 1 (untouched, bit for bit)
        coverage_i = alpha_i / sum(alpha)      where sum(alpha) > 1 (the objects must overlap there)

    So a single object, or objects meeting edge to edge, decode exactly to their alphas; two objects
    both fully over a pixel decode to 0.5 each and 1 together; the ranking order is unchanged (one
    factor per pixel). The split is continuous in the alphas (no seam where the sum crosses 1).
    Alphas are clamped to [0, 1] first and NaN counts as 0. Float32 rounding can leave a shared pixel's
    sum a few ulps (~1e-7) above 1.
    """
    a = np.clip(np.asarray(alphas, np.float32), 0.0, 1.0) + np.float32(0)  # -0 -> +0
    np.nan_to_num(a, copy=False, nan=0.0)
    total = a.sum(axis=0, dtype=np.float64)
    scale = np.ones(total.shape, np.float64)
    np.divide(1.0, total, out=scale, where=total > 1.0)
    return a * scale.astype(np.float32)  # 1.0 (alphas untouched) wherever they add up to at most 1


def cryptomatte_channels(
    layer_type: str, mattes: Mapping[str, np.ndarray], ranks: Optional[int] = None
) -> Dict[str, np.ndarray]:
    """`{type}NN.R/G/B/A` float32 channels: per pixel, (id, coverage) pairs by coverage, highest first.

    `ranks` defaults to the number of objects rounded up to even (the spec suggests 6 for renders,
    where many ids meet in a pixel; here only tracked objects can). Coverage is the fraction of the
    pixel each id covers, so a pixel's coverages add up to at most 1 (spec v1.2, "Ranking Pixel
    Filter"; see `shared_coverage`). Ties keep the order of `mattes`; empty ranks hold id 0 and
    coverage 0, as the spec asks.
    """
    if not mattes:
        raise MatteBridgeError("cryptomatte: no mattes to encode")
    names = list(mattes)
    shapes = {np.shape(a) for a in mattes.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise MatteBridgeError(f"cryptomatte: mattes must share one (height, width) shape (got {sorted(shapes)})")
    ranks = ranks if ranks is not None else len(names) + len(names) % 2
    if ranks < 1:
        raise MatteBridgeError(f"cryptomatte: ranks must be at least 1 (got {ranks})")
    cover = shared_coverage(np.stack([np.asarray(mattes[n], np.float32) for n in names]))  # (N, H, W)
    ids = np.array([name_to_float(n) for n in names], np.float32)
    order = np.argsort(-cover, axis=0, kind="stable")[:ranks]
    cov = np.take_along_axis(cover, order, axis=0)
    idv = np.where(cov > 0, ids[order], np.float32(0))
    h, w = cover.shape[1:]
    out: Dict[str, np.ndarray] = {}
    for layer in range((ranks + 1) // 2):
        for ch, (plane, r) in zip(
            "RGBA", ((idv, 2 * layer), (cov, 2 * layer), (idv, 2 * layer + 1), (cov, 2 * layer + 1))
        ):
            out[f"{layer_type}{layer:02d}.{ch}"] = plane[r] if r < len(plane) else np.zeros((h, w), np.float32)
    return out
