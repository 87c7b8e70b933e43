"""A display/view baked by OCIO into LUTs: the model's input goes through them, on its device (float32).

OCIO's CPU processor costs ~0.4 s per 1024² frame for an ACES 2.0 view; a GPU interpolates a LUT in a few ms (torch,
`apply_torch`), a CPU core in ~0.05 s when OCIO's own Lut3D and the tail's exact ops run it (`apply_cpu`; torch's
grid_sample and table gathers take ~0.13 s there). The processor's own ops are split so that only what needs it goes
through a 3D LUT:

- tail: the trailing per-channel ops (the display's encoding: sRGB/gamma/PQ curves, ranges, 1D LUTs), baked as
  one 1D table over the values that reach 0..1 (outside it the curve is monotone, so the clip gives 0 or 1);
  the table is spaced as u⁴ so the infinite slope of a pure power curve at 0 is followed;
- middle: everything before the tail (the tone map, gamut mapping, matrices), baked as a 3D cube over a shaper.
  When it is only matrices (un-tone-mapped and video views) it is applied exactly as one 3×4 matrix instead.

The shaper: u = asinh(x / SOFT) rescaled to 0..1 over the domain [lo, hi]: logarithmic above ~SOFT (an equal
share of the lattice per stop), linear through 0 and into negatives. The domain is the processor's own input
clamp when it starts with one (ACES 2.0 views clamp to [0, 1024] or [0, 4096]), else DOMAIN: half float's
finite range above 0, to -1 below (wider negatives clamp to -1).
Every lattice point is evaluated by OCIO's CPU processor, so the LUT is OCIO's result at those points. On the CPU
the cube is interpolated trilinearly by OCIO (as grid_sample does on a device) and the tail is OCIO's exact ops, not
the table: the two paths differ by the table's error only (tested).

Accuracy against OCIO's CPU processor after the clip to 0..1 (tests/test_colour_lut.py, studio config, from
ACEScg and ACES2065-1): un-tone-mapped, video and raw views are a matrix and a curve, within 1/255 everywhere.
ACES 2.0 SDR and HDR views: within 1/255 on real footage (and 2 stops over it); on random wide-gamut values
from -1 to 1000, 99 % within 0.7/255 and 99.9 % within 3.2/255, but ~0.5 % are off by more than 1/255, up to
0.15, near the creases of ACES 2.0's gamut mapping (the error halves, not quarters, as the cube doubles);
uniformly random saturated colours (each channel -0.05..3) fare worse: 1.5 % off by more than 1/255.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

CUBE = 129  # lattice points per axis of the 3D cube (26 MB in float32)
TABLE = 4096  # entries of the 1D tail table
SOFT = 1e-2  # where the shaper turns from linear to logarithmic (scene-linear units)
DOMAIN = (-1.0, 65504.0)
CACHED = 4  # baked transforms kept (26 MB each)
RUN_BLOCK = 65536  # values OCIO evaluates per thread at least while baking

_cache: "OrderedDict[tuple, BakedLut]" = OrderedDict()
_cache_lock = threading.Lock()


@dataclass
class BakedLut:
    """The device form of one processor: (affine | shaper + cube), then the tail table."""

    affine: np.ndarray  # (3, 4): rgb -> affine[:, :3] @ rgb + affine[:, 3], the leading matrices, exact
    cube: Optional[np.ndarray]  # (N, N, N, 3) indexed [b, g, r], over the shaper; None: the matrices are all
    domain: tuple  # (lo, hi) the shaper covers
    tail: Optional[np.ndarray]  # (TABLE, 3) or None when there is no per-channel tail
    tail_range: tuple  # (a, b): the tail's input at u = 0 and u = 1
    tail_ops: list = field(default_factory=list)  # the tail's OCIO transforms, exact (the CPU path)
    _tensors: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cpu: Optional[tuple] = field(default=None, repr=False)

    def apply(self, rgb):
        """(..., 3) float32 tensor of input-space RGB -> the display/view, on the tensor's device, unclipped."""
        return self.apply_cpu(rgb) if rgb.device.type == "cpu" else self.apply_torch(rgb)

    def apply_cpu(self, rgb):
        """`apply` with OCIO's CPU ops for the matrix, the cube and the tail, the shaper in numpy between them."""
        import torch

        lead, rest = self._cpu_processors()
        out = rgb.detach().to(torch.float32).reshape(-1, 3).numpy().copy()
        if lead is not None:
            lead.applyRGB(out)
        if self.cube is not None:
            self._shaper(out, np)
        rest.applyRGB(out)
        return torch.from_numpy(out).reshape(rgb.shape)

    def apply_torch(self, rgb):
        """`apply` in torch ops alone: grid_sample for the cube, the tail table (any device; a GPU's path)."""
        import torch

        t = self._on(rgb.device)
        out = rgb @ t["matrix"].T + t["offset"]
        if self.cube is not None:
            u = self._shaper(out, torch)
            grid = (u * 2 - 1).reshape(1, 1, 1, -1, 3)
            out = torch.nn.functional.grid_sample(t["cube"], grid, mode="bilinear", align_corners=True)
            out = out.reshape(3, -1).T.reshape(rgb.shape)
        if self.tail is not None:
            a, b = self.tail_range
            u = ((out.clamp(a, b) - a) / (b - a)) ** 0.25 * (TABLE - 1)
            i0 = u.floor().clamp(max=TABLE - 2)
            w = u - i0
            i0 = i0.long()
            table = t["tail"]  # (3, TABLE)
            flat = i0.reshape(-1, 3).T  # (3, P)
            lo_v = torch.gather(table, 1, flat)
            hi_v = torch.gather(table, 1, flat + 1)
            wt = w.reshape(-1, 3).T
            out = (lo_v + (hi_v - lo_v) * wt).T.reshape(rgb.shape)
        return out

    def _shaper(self, x, xp):
        """x -> u in 0..1 over the domain (numpy, in place, or torch as xp)."""
        lo, hi = self.domain
        s0, s1 = _shape(lo), _shape(hi)
        if xp is np:  # numpy's float32 arcsinh is vectorised: 3 ms for 1024² RGB on a core, torch's 23 ms
            u = np.arcsinh(np.clip(x, lo, hi, out=x) * np.float32(1.0 / SOFT), out=x)
            return np.multiply(u - np.float32(s0), np.float32(1.0 / (s1 - s0)), out=x)
        return (xp.asinh(x.clamp(lo, hi) / SOFT) - s0) / (s1 - s0)

    def _cpu_processors(self) -> tuple:
        """(lead, rest) OCIO CPU processors: the leading matrix (None when it is the identity), then the cube
        (trilinear, as grid_sample) and the tail's exact ops; without a cube, rest is the whole transform."""
        import PyOpenColorIO as ocio

        with self._lock:
            if self._cpu is None:
                matrix = []
                if not np.array_equal(self.affine, np.eye(3, 4)):
                    m44 = np.eye(4)
                    m44[:3, :3] = self.affine[:, :3]
                    matrix = [ocio.MatrixTransform(m44.ravel().tolist(), list(self.affine[:, 3]) + [0.0])]
                if self.cube is None:  # matrices and curves: OCIO runs the whole transform exactly
                    self._cpu = (None, _cpu_processor(matrix + self.tail_ops))
                else:
                    cube = ocio.Lut3DTransform(gridSize=self.cube.shape[0], interpolation=ocio.INTERP_LINEAR)
                    cube.setData(np.ascontiguousarray(self.cube.transpose(2, 1, 0, 3), np.float32).ravel())  # [r, g, b]
                    self._cpu = (_cpu_processor(matrix) if matrix else None, _cpu_processor([cube] + self.tail_ops))
            return self._cpu

    def _on(self, device) -> dict:
        import torch

        with self._lock:
            if device not in self._tensors:
                t = {
                    "matrix": torch.tensor(self.affine[:, :3], dtype=torch.float32, device=device),
                    "offset": torch.tensor(self.affine[:, 3], dtype=torch.float32, device=device),
                }
                if self.cube is not None:
                    t["cube"] = torch.from_numpy(np.ascontiguousarray(self.cube.transpose(3, 0, 1, 2)))[None].to(device)
                if self.tail is not None:
                    t["tail"] = torch.from_numpy(np.ascontiguousarray(self.tail.T)).to(device)
                self._tensors[device] = t
            return self._tensors[device]


def _shape(x):
    return np.arcsinh(np.asarray(x, np.float64) / SOFT)


def _unshape(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    s0, s1 = _shape(lo), _shape(hi)
    return SOFT * np.sinh(s0 + u * (s1 - s0))


PER_CHANNEL = (
    "RangeTransform",
    "ExponentTransform",
    "ExponentWithLinearTransform",
    "LogTransform",
    "LogAffineTransform",
    "LogCameraTransform",
    "Lut1DTransform",
)


def _cpu_processor(ops: list):
    """OCIO's CPU processor for a list of ops, in a raw config (they name no colour spaces)."""
    import PyOpenColorIO as ocio

    group = ocio.GroupTransform()
    for op in ops:
        group.appendTransform(op)
    return ocio.Config.CreateRaw().getProcessor(group).getDefaultCPUProcessor()


def _run(ops: list, rgb: np.ndarray) -> np.ndarray:
    """OCIO's CPU processor for a list of ops on (P, 3) values, in blocks on every core (OCIO releases the GIL:
    the 129³ lattice of an ACES 2.0 view takes ~1 s on one core)."""
    out = np.ascontiguousarray(rgb, dtype=np.float32).copy()
    if ops:
        processor = _cpu_processor(ops)
        blocks = np.array_split(out, max(1, min(os.cpu_count() or 1, len(out) // RUN_BLOCK)))  # views of `out`
        with ThreadPoolExecutor(len(blocks), thread_name_prefix="mattebridge-bake") as pool:
            list(pool.map(processor.applyRGB, blocks))
    return out


def _input_clamp(op) -> Optional[tuple]:
    """(lo, hi) when `op` clamps every channel to [lo, hi] and changes nothing inside."""
    import PyOpenColorIO as ocio

    if type(op).__name__ != "RangeTransform" or op.getStyle() != ocio.RANGE_CLAMP:
        return None
    if not (op.hasMinInValue() and op.hasMaxInValue() and op.hasMinOutValue() and op.hasMaxOutValue()):
        return None
    lo, hi = op.getMinInValue(), op.getMaxInValue()
    return (lo, hi) if (op.getMinOutValue(), op.getMaxOutValue()) == (lo, hi) else None


def _bake_tail(tail: list):
    """The tail as a monotone table over (a, b), where each channel passes 0..1; None if it is not monotone."""
    probe = np.concatenate([-np.logspace(5, -8, 400), [0.0], np.logspace(-8, 5, 400)])
    out = _run(tail, np.repeat(probe[:, None], 3, axis=1)).astype(np.float64)
    if (np.diff(out, axis=0) < 0).any():
        return None
    a = min(probe[out[:, c] <= 0].max(initial=probe[0]) for c in range(3))
    b = max(probe[out[:, c] >= 1].min(initial=probe[-1]) for c in range(3))
    x = a + (b - a) * np.linspace(0.0, 1.0, TABLE) ** 4
    return _run(tail, np.repeat(x[:, None], 3, axis=1)), (float(a), float(b))


def bake(processor, cube: int = CUBE) -> BakedLut:
    """Split `processor` (an OCIO Processor) into its device form, every table evaluated by OCIO."""
    import PyOpenColorIO as ocio

    ops = list(processor.getOptimizedProcessor(ocio.OPTIMIZATION_DEFAULT).createGroupTransform())
    split = len(ops)
    while split > 0 and type(ops[split - 1]).__name__ in PER_CHANNEL:
        split -= 1
    tail, tail_range = (None, (0.0, 1.0))
    if split < len(ops):
        baked = _bake_tail(ops[split:])
        if baked is None:
            split = len(ops)
        else:
            tail, tail_range = baked
    tail_ops = ops[split:]
    lead = 0
    while lead < split and type(ops[lead]).__name__ == "MatrixTransform":
        lead += 1
    basis = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    at = _run(ops[:lead], basis).astype(np.float64)
    affine = np.concatenate([(at[1:] - at[0]).T, at[0][:, None]], axis=1)
    middle = ops[lead:split]
    if not middle:
        return BakedLut(affine, None, DOMAIN, tail, tail_range, tail_ops)
    domain = _input_clamp(middle[0]) or DOMAIN
    axis = _unshape(np.linspace(0.0, 1.0, cube), *domain)
    b, g, r = np.meshgrid(axis, axis, axis, indexing="ij")
    lattice = np.nan_to_num(_run(middle, np.stack([r, g, b], -1).reshape(-1, 3)))  # NaN at absurd colours
    return BakedLut(affine, lattice.reshape(cube, cube, cube, 3), domain, tail, tail_range, tail_ops)


def baked(processor, cube: int = CUBE) -> BakedLut:
    """`bake`, cached by the processor's cache id (which covers config, context, files and transform)."""
    key = (processor.getCacheID(), cube)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        lut = _cache[key] = bake(processor, cube)
        while len(_cache) > CACHED:
            _cache.popitem(last=False)
        return lut
