"""Shared fixtures: a seeded random-weight SAM 2.1 tiny checkpoint, EXR plates made from real footage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
FOOTAGE = REPO / "tests" / "data" / "bedroom"  # real footage, Apache-2.0 (see its README.md)
TEST_SIZE = 256  # model input size for CPU tests (parameter shapes do not depend on it)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> str:
    from mattebridge.core.engine.models import save_random_checkpoint

    return save_random_checkpoint(str(tmp_path_factory.mktemp("model") / "random_tiny.pt"), "sam2.1_hiera_t", seed=0)


def model_args(checkpoint: str):
    return [
        "--checkpoint",
        checkpoint,
        "--model-config",
        "sam2.1_hiera_t",
        "--image-size",
        str(TEST_SIZE),
        "--device",
        "cpu",
    ]


def write_exr(path, channels: dict, display=None, data=None, pixel_aspect=1.0, pixel_type="half", tiled=False):
    """A real EXR through OpenImageIO; `channels` name -> (h, w) array over the data window."""
    import OpenImageIO as oiio

    names = list(channels)
    h, w = channels[names[0]].shape
    data = data or (0, 0, w, h)
    display = display or data
    spec = oiio.ImageSpec(w, h, len(names), pixel_type)
    spec.x, spec.y = data[0], data[1]
    spec.full_x, spec.full_y, spec.full_width, spec.full_height = display
    spec.channelnames = tuple(names)
    spec.attribute("compression", "zip")
    spec.attribute("PixelAspectRatio", float(pixel_aspect))
    if tiled:
        spec.tile_width = spec.tile_height = 32
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec), oiio.geterror()
    assert out.write_image(np.stack([channels[n] for n in names], -1).astype(np.float32))
    out.close()
    return str(path)


def footage_frames(count: int):
    frames = sorted(FOOTAGE.glob("bedroom.*.jpg"))[:count]
    assert len(frames) == count, f"need {count} frames of {FOOTAGE}"
    return frames


@pytest.fixture(scope="session")
def bedroom_plate(tmp_path_factory) -> str:
    """20 frames of the real bedroom footage as ACEScg half-float EXRs (sRGB -> ACEScg through OCIO)."""
    import OpenImageIO as oiio

    folder = tmp_path_factory.mktemp("bedroom")
    for src in footage_frames(20):
        frame = src.name.split(".")[1]
        buf = oiio.ImageBufAlgo.colorconvert(
            oiio.ImageBuf(str(src)), "sRGB - Texture", "ACEScg", colorconfig="ocio://studio-config-latest"
        )
        buf.set_write_format(oiio.HALF)
        assert buf.write(str(folder / f"plate.{frame}.exr")), oiio.geterror()
    return str(folder / "plate.####.exr")


def run_cli(*args, cwd=None, env=None, timeout=600):
    """`mattebridge ...` as a real process; returns (exit status, stdout, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "mattebridge.cli", *map(str, args)],
        cwd=cwd,
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr


def read_exr(path):
    """(pixels (h, w, c) float32, spec) of a real EXR."""
    import OpenImageIO as oiio

    inp = oiio.ImageInput.open(str(path))
    assert inp is not None, oiio.geterror()
    spec = inp.spec()
    pixels = inp.read_image(0, 0, 0, spec.nchannels, "float")
    inp.close()
    return np.asarray(pixels).reshape(spec.height, spec.width, spec.nchannels), spec


def raw_socket(address, timeout_ms=10000):
    """A bare DEALER on the server (linger 0, every receive with a timeout): for messages the client won't send."""
    import zmq

    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
    sock.connect(address)
    return sock


def wait_for(predicate, timeout: float, what: str):
    """`predicate()`'s first true value, polled every 0.2 s; an AssertionError naming `what` after `timeout` s."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A real `mattebridge serve` process on a loopback port (random-weight tiny model)."""

    def __init__(self, checkpoint: str, log_dir, *extra, port: int = 0, cwd=None, env=None):
        import time

        self.port = port or free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.log_path = Path(log_dir) / f"serve-{self.port}.log"
        self.args = [
            sys.executable,
            "-m",
            "mattebridge.cli",
            "serve",
            "--bind",
            self.address,
            *model_args(checkpoint),
            *map(str, extra),
        ]
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=self._log, cwd=cwd, env=dict(os.environ, **(env or {}))
        )
        deadline = time.monotonic() + 120
        line = b""
        while time.monotonic() < deadline and self.process.poll() is None:
            line = self.process.stdout.readline()
            if b"ready on" in line:
                return
        self.stop()
        raise RuntimeError(f"server did not start: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig=None) -> int:
        import signal

        if self.process.poll() is None:
            self.process.send_signal(sig or signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        self.process.stdout.close()
        return self.process.returncode


@pytest.fixture(scope="session")
def mb_server(checkpoint, tmp_path_factory):
    """One shared server for tests that do not kill it (allowed roots: cwd and the system temp dir)."""
    server = ServerProcess(checkpoint, tmp_path_factory.mktemp("serve"), "--client-timeout", "5")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_vitmatte(tmp_path_factory) -> str:
    """A ViTMatte small enough for a CPU test, its weights random but not degenerate (the published head
    starts near 0.5 everywhere, which would make any comparison trivially equal)."""
    import torch
    from transformers import VitDetConfig, VitMatteConfig, VitMatteForImageMatting

    backbone = VitDetConfig(
        num_channels=4,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=2,
        image_size=64,
        pretrain_image_size=64,
        patch_size=16,
        out_features=["stage2"],
    )
    config = VitMatteConfig(
        backbone_config=backbone,
        hidden_size=32,
        convstream_hidden_sizes=[8, 16, 16],
        fusion_hidden_sizes=[16, 16, 8, 8],
    )
    torch.manual_seed(0)
    model = VitMatteForImageMatting(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("vitmatte") / "tiny-vitmatte"
    model.save_pretrained(folder)
    return str(folder)
