"""Hostile paths: every file the server or `track` opens is checked where it is opened, and no output ever
resolves to an input. Each attack runs against a real `mattebridge serve` on a loopback port whose only
allowed root is `root/`; a canary folder outside it is checked for new or changed files after each attack."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from conftest import ServerProcess, raw_socket, run_cli, write_exr

from mattebridge.core.wire.client import Client, ServerError
from mattebridge.core.wire.protocol import Message, decode, encode

W, H = 96, 64
LUT = "Version 1\nFrom 0.0 1.0\nLength 2\nComponents 1\n{\n0.0\n1.0\n}\n"
CONFIG = """ocio_profile_version: 2
search_path: "{search}"
roles:
  default: raw
  scene_linear: lin
displays:
  sRGB:
    - !<View> {{name: Look, colorspace: look}}
colorspaces:
  - !<ColorSpace> {{name: raw, isdata: true}}
  - !<ColorSpace> {{name: lin}}
  - !<ColorSpace>
    name: look
    from_scene_reference: !<FileTransform> {{src: look.spi1d, interpolation: linear}}
"""


def snapshot(folder):
    """path -> (sha1, mode) of every file and link under `folder`."""
    out = {}
    for base, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(base, name)
            if os.path.islink(path):
                out[path] = ("link", os.readlink(path))
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    out[path] = (hashlib.sha1(f.read()).hexdigest(), os.stat(path).st_mode)
    return out


def make_plate(folder, frames=(1, 2, 3), name="plate"):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for f in frames:
        rgb = rng.random((H, W, 3), dtype=np.float32)
        rgb[16:48, 24:72] += 2.0  # a bright subject
        write_exr(os.path.join(folder, f"{name}.{f:04d}.exr"), {c: rgb[..., i] for i, c in enumerate("RGB")})
    return os.path.join(str(folder), f"{name}.####.exr")


def disc_mask(path):
    a = np.zeros((H, W), np.float32)
    a[20:44, 30:66] = 1.0
    return write_exr(path, {"A": a})


@pytest.fixture(scope="module")
def site(checkpoint, tmp_path_factory):
    """root/ (the one allowed root, also the server's $HOME) with a plate, and canary/ outside it."""
    top = tmp_path_factory.mktemp("site")
    root, canary = top / "root", top / "canary"
    plate = make_plate(root / "plates")
    make_plate(canary, name="secret")
    disc_mask(str(canary / "secret_mask.exr"))
    (canary / "evil.0001.exr").write_bytes(b"an EXR of someone else's")
    private = canary / "private"
    private.mkdir()
    (private / "look.spi1d").write_text(LUT)
    (private / "config.ocio").write_text(CONFIG.format(search="."))
    private.chmod(0o700)
    server = ServerProcess(checkpoint, top, "--allow-root", root, env={"HOME": str(root)})
    yield {"root": root, "canary": canary, "plate": plate, "server": server}
    server.stop()


@pytest.fixture
def canary_unchanged(site):
    before = snapshot(site["canary"])
    yield
    assert snapshot(site["canary"]) == before, "a file outside the allowed roots was written or changed"


def error_code(fn):
    with pytest.raises(ServerError) as e:
        fn()
    assert "\n" not in str(e.value)
    return e.value.code, str(e.value)


# --- 1. object names ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["{canary}/evil", "../../canary/evil", "..", ".hidden", "a/b", "x" * 65, "", "é"])
def test_object_names_are_checked_before_they_become_file_names(site, canary_unchanged, name):
    name = name.format(canary=site["canary"])
    mask = np.zeros((H, W), np.uint8)
    mask[20:40, 30:60] = 255
    with Client(site["server"].address, timeout=60) as client:
        clip = client.open_clip(site["plate"], "1-3")
        code, text = error_code(lambda: clip.prompt(1, name, mask=mask, edge="raw"))
        assert code == "bad_field" and "object" in text
        assert clip.prompts()["objects"] == []


# --- 2. mask paths ---------------------------------------------------------------------------------------
def test_mask_paths_outside_the_roots_are_refused_without_telling_whether_they_exist(site, canary_unchanged):
    with Client(site["server"].address, timeout=60) as client:
        clip = client.open_clip(site["plate"], "1-3")
        exists = error_code(lambda: clip.prompt(1, "m", mask=site["canary"] / "secret_mask.exr", edge="raw"))
        missing = error_code(lambda: clip.prompt(1, "m", mask=site["canary"] / "no_such.exr", edge="raw"))
        assert exists[0] == missing[0] == "forbidden_path"
        os.symlink(site["canary"] / "secret_mask.exr", site["root"] / "mask_link.exr")
        try:
            assert error_code(lambda: clip.prompt(1, "m", mask=site["root"] / "mask_link.exr"))[0] == "forbidden_path"
        finally:
            os.unlink(site["root"] / "mask_link.exr")
        # a mask inside the root still works
        disc_mask(str(site["root"] / "mask.exr"))
        assert clip.prompt(1, "m", mask=site["root"] / "mask.exr", edge="raw").alpha["m"].shape == (H, W)
        # and a propagation's prompts cannot name one outside either
        prompts = {
            "version": 1,
            "objects": [{"name": "m", "frames": [{"frame": 1, "mask": str(site["canary"] / "secret_mask.exr")}]}],
        }
        code, _ = error_code(lambda: list(clip.propagate(out=str(site["root"] / "p" / "m.####.exr"), prompts=prompts)))
        assert code == "forbidden_path"
        assert not (site["root"] / "p").exists() or not os.listdir(site["root"] / "p")


# --- 3. concrete paths: tokens, symlinks, ~ -----------------------------------------------------------
def test_outputs_through_symlinks_inside_the_root_are_refused(site, canary_unchanged):
    root = site["root"]
    os.symlink(site["canary"], root / "escape")
    os.makedirs(root / "frames", exist_ok=True)
    os.symlink(site["canary"], root / "frames" / "0002")  # root/####/... reaches outside on frame 2 only
    try:
        with Client(site["server"].address, timeout=60) as client:
            clip = client.open_clip(site["plate"], "1-3")
            clip.prompt(1, "evil", points=[(48, 32, True)], edge="raw")
            for out in (
                root / "escape" / "{object}.####.exr",
                root / "frames" / "####" / "evil.exr",
                root / "escape" / "x.####.exr",
            ):
                code, text = error_code(lambda: list(clip.propagate(out=str(out), edge="raw")))
                assert code == "forbidden_path" and "out: " in text
            for key in ("cutout", "report"):
                out = str(root / "ok" / "{object}.####.exr")
                other = str(root / "escape" / ("c.####.exr" if key == "cutout" else "qc"))
                code, _ = error_code(lambda: list(clip.propagate(out=out, edge="raw", **{key: other})))
                assert code == "forbidden_path"
    finally:
        os.unlink(root / "escape")
        os.unlink(root / "frames" / "0002")


def test_plate_frames_that_are_symlinks_out_of_the_root_are_not_read(site, canary_unchanged):
    root = site["root"]
    os.makedirs(root / "mixed", exist_ok=True)
    for f in (1, 3):
        os.link(site["plate"].replace("####", f"{f:04d}"), root / "mixed" / f"plate.{f:04d}.exr")
    os.symlink(site["canary"] / "secret.0002.exr", root / "mixed" / "plate.0002.exr")
    with Client(site["server"].address, timeout=60) as client:
        code, text = error_code(lambda: client.open_clip(str(root / "mixed" / "plate.####.exr"), "1-3"))
        assert code == "forbidden_path" and "pattern: frame 2" in text
        code, _ = error_code(lambda: client.open_clip(str(site["canary"] / "secret.####.exr"), "1-3"))
        assert code == "forbidden_path"


def test_tilde_is_expanded_for_the_check_and_for_the_write_alike(site, canary_unchanged):
    """Raw messages (the client makes paths absolute): the server's $HOME is root/."""
    prompts = {"version": 1, "objects": [{"name": "hero", "frames": [{"frame": 1, "points": [{"x": 48, "y": 32}]}]}]}
    sock = raw_socket(site["server"].address, 120000)  # clips belong to a connection: one socket throughout

    def ask(msg_type, content):
        sock.send_multipart(encode(Message(msg_type, content)))
        while True:
            reply = decode(sock.recv_multipart())
            if reply.msg_type not in ("propagate_started", "frame"):
                return reply

    try:
        opened = ask("open_clip", {"source": "files", "pattern": "~/plates/plate.####.exr", "frames": "1-2"})
        assert opened.msg_type == "open_clip_reply", opened.content
        cid = opened.content["clip"]
        done = ask("propagate", {"clip": cid, "out": "~/tilde/{object}.####.exr", "prompts": prompts, "edge": "raw"})
        assert done.msg_type == "propagate_done" and done.content["status"] == "done", done.content
        assert sorted(os.listdir(site["root"] / "tilde")) == ["hero.0001.exr", "hero.0002.exr"]
        assert not os.path.exists(os.path.join(os.getcwd(), "~"))
        reply = ask("propagate", {"clip": cid, "out": "~/../canary/{object}.####.exr", "prompts": prompts})
        assert reply.msg_type == "error" and reply.content["code"] == "forbidden_path"
    finally:
        sock.close()


# --- 5. outputs never overwrite inputs ------------------------------------------------------------------
def test_propagate_refuses_to_write_over_the_plate(site, canary_unchanged):
    plate_dir = os.path.dirname(site["plate"])
    before = snapshot(plate_dir)
    with Client(site["server"].address, timeout=60) as client:
        clip = client.open_clip(site["plate"], "1-3")
        clip.prompt(1, "main", points=[(48, 32, True)], edge="raw")
        for kwargs in (
            {"out": site["plate"]},
            {"out": site["plate"].replace("####", "%04d")},
            {"out": str(site["root"] / "ok.####.exr"), "cutout": site["plate"]},
        ):
            code, text = error_code(lambda: list(clip.propagate(edge="raw", **kwargs)))
            assert code == "bad_field" and "plate frame" in text
    assert snapshot(plate_dir) == before


@pytest.fixture
def plate_copy(tmp_path):
    return make_plate(tmp_path / "plates", frames=(1, 2))


@pytest.mark.parametrize("spelling", ["same", "printf", "symlinked-folder", "hardlink", "cutout", "prompts", "mask"])
def test_track_refuses_any_output_that_resolves_to_an_input(checkpoint, tmp_path, plate_copy, spelling):
    from conftest import model_args

    plates = os.path.dirname(plate_copy)
    os.symlink(plates, tmp_path / "alias")
    extra = []
    out = str(tmp_path / "m.####.exr")
    if spelling == "same":
        out = plate_copy
    elif spelling == "printf":
        out = plate_copy.replace("####", "%04d")
    elif spelling == "symlinked-folder":
        out = str(tmp_path / "alias" / "plate.####.exr")
    elif spelling == "hardlink":
        os.makedirs(tmp_path / "links")
        for f in (1, 2):
            os.link(plate_copy.replace("####", f"{f:04d}"), tmp_path / "links" / f"m.{f:04d}.exr")
        out = str(tmp_path / "links" / "m.####.exr")
    elif spelling == "cutout":
        extra = ["--cutout", plate_copy]
    elif spelling == "prompts":
        prompts = tmp_path / "p.0001.exr"
        prompts.write_text('{"version": 1, "objects": []}')
        extra, out = ["--prompts", str(prompts)], str(tmp_path / "p.####.exr")
    elif spelling == "mask":
        disc_mask(str(tmp_path / "mk.0001.exr"))
        extra, out = ["--mask", str(tmp_path / "mk.0001.exr") + "@1"], str(tmp_path / "mk.####.exr")
    before = snapshot(tmp_path)
    points = [] if spelling == "mask" else ["--point", "48,32"]
    code, _, err = run_cli(
        "track", plate_copy, "--frames", "1-2", *points, "--edge", "raw", "--out", out, *extra, *model_args(checkpoint)
    )
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mattebridge: error:") and "refusing to overwrite" in lines[0]
    assert snapshot(tmp_path) == before


# --- 10. masks in the overscan -------------------------------------------------------------------------
def test_a_mask_whose_pixels_all_lie_in_the_overscan_is_refused(checkpoint, tmp_path, plate_copy):
    from conftest import model_args

    a = np.zeros((H + 40, W + 40), np.float32)
    a[:15, :] = 1.0  # only in the 20-pixel overscan band above the display window
    mask = write_exr(tmp_path / "overscan.exr", {"A": a}, display=(0, 0, W, H), data=(-20, -20, W + 40, H + 40))
    code, _, err = run_cli(
        "track",
        plate_copy,
        "--frames",
        "1-2",
        "--mask",
        mask,
        "--out",
        str(tmp_path / "m" / "m.####.exr"),
        *model_args(checkpoint),
    )
    errors = [line for line in err.splitlines() if line.startswith("mattebridge: error:")]
    assert code == 2 and len(errors) == 1 and errors[0] == err.strip().splitlines()[-1] and "Traceback" not in err
    assert "overscan.exr" in errors[0] and "frame 1" in errors[0] and "outside the display window" in errors[0]
    assert not (tmp_path / "m").exists()


# --- 12. colour configs ----------------------------------------------------------------------------------


@pytest.fixture
def public_config():
    """A config in a folder every user can reach (as a host's installation is): pytest's own temp folders are
    0700, so this one is made directly in the system temp folder."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="mattebridge-public-ocio-")
    os.chmod(folder, 0o755)
    for name, text in (("config.ocio", CONFIG.format(search=".")), ("look.spi1d", LUT)):
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(folder, name), 0o644)
    yield os.path.join(folder, "config.ocio")
    shutil.rmtree(folder)


def test_colour_configs_outside_the_roots_only_when_every_user_may_read_them(site, canary_unchanged, public_config):
    root, private = site["root"], site["canary"] / "private"
    (root / "sneaky.ocio").write_text(CONFIG.format(search=private))  # in the root, its LUTs outside
    try:
        with Client(site["server"].address, timeout=60) as client:

            def open_with(config):
                return client.open_clip(site["plate"], "1-2", colorspace="lin", ocio=str(config), view="sRGB/Look")

            assert error_code(lambda: open_with(private / "config.ocio"))[0] == "forbidden_path"
            code, text = error_code(lambda: open_with(root / "sneaky.ocio"))
            assert code == "forbidden_path" and "look.spi1d" in text
            assert open_with(public_config).view == "Look"  # a host's own config: everyone may read it anyway
            os.chmod(public_config, 0o600)
            assert error_code(lambda: open_with(public_config))[0] == "forbidden_path"
    finally:
        os.unlink(root / "sneaky.ocio")


def test_the_servers_own_folder_is_out_of_reach_inside_the_temp_root(checkpoint, tmp_path):
    """The front talks to its model workers over ipc sockets in its private folder, which lies in the system temp
    folder, a default root: no client path may name anything there (the sockets, another worker's scratch)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    plate = make_plate(temp / "plates")
    server = ServerProcess(checkpoint, tmp_path, "--devices", "cpu,cpu", env={"TMPDIR": str(temp)}, cwd=temp)
    try:
        (private,) = [p for p in temp.iterdir() if p.name.startswith("mattebridge-serve-")]
        assert private.stat().st_mode & 0o777 == 0o700
        sockets = sorted(p.name for p in private.iterdir() if p.is_socket())
        assert sockets == ["replies", "requests"]
        before = snapshot(private)
        with Client(server.address, timeout=60) as client:
            one = client.open_clip(plate, "1-1")  # one frame: an output needs no frame token, a socket is a name
            one.prompt(1, "m", points=[(48, 32, True)], edge="raw")
            code, text = error_code(lambda: list(one.propagate(out=str(private / "requests"), edge="raw")))
            assert code == "forbidden_path" and "out: " in text, text
            clip = client.open_clip(plate, "1-3")
            clip.prompt(1, "m", points=[(48, 32, True)], edge="raw")
            for out in (private / "x.####.exr", private / "new" / "m.####.exr"):
                code, text = error_code(lambda: list(clip.propagate(out=str(out), edge="raw")))
                assert code == "forbidden_path" and "out: " in text, text
            code, _ = error_code(lambda: clip.prompt(1, "m", mask=private / "replies"))
            assert code == "forbidden_path"
            assert client.hello()["devices"] == ["cpu", "cpu"]  # both workers still there
        assert snapshot(private) == before
    finally:
        assert server.stop() == 0
