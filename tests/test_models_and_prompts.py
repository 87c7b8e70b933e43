"""Checkpoint download (against a real local HTTP server), the model cache, and the prompts file."""

from __future__ import annotations

import hashlib
import http.server
import os
import stat
import threading

import pytest
from conftest import run_cli

from mattebridge.core.engine import models
from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.paths import plain_mode
from mattebridge.core.wire.prompts import Prompts

PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)


@pytest.fixture
def http_server(tmp_path):
    """Serves tmp_path/www on a loopback port, like Meta's download host would."""
    www = tmp_path / "www"
    www.mkdir()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(www), **k)  # noqa: E731
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}/segment_anything_2/092824/"
    server.shutdown()
    server.server_close()


def test_download_verifies_sha256(http_server, tmp_path, monkeypatch):
    www, url = http_server
    (www / "segment_anything_2" / "092824").mkdir(parents=True)
    (www / "segment_anything_2" / "092824" / "sam2.1_hiera_tiny.pt").write_bytes(PAYLOAD)
    monkeypatch.setenv("MATTEBRIDGE_MODELS", str(tmp_path / "cache"))
    monkeypatch.setenv("MATTEBRIDGE_MODEL_BASE_URL", url)

    # the published digest does not match these bytes: refused, nothing left in the cache
    with pytest.raises(MatteBridgeError, match="SHA-256 mismatch"):
        models.download("sam2.1_hiera_tiny")
    assert os.listdir(tmp_path / "cache") == []

    info = models.MODELS["sam2.1_hiera_tiny"]
    monkeypatch.setitem(
        models.MODELS,
        "sam2.1_hiera_tiny",
        models.ModelInfo(info.name, info.config, hashlib.sha256(PAYLOAD).hexdigest(), len(PAYLOAD)),
    )
    seen = []
    path = models.download("sam2.1_hiera_tiny", progress=lambda done, total: seen.append((done, total)))
    assert path == models.model_path("sam2.1_hiera_tiny") and open(path, "rb").read() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert os.listdir(tmp_path / "cache") == ["sam2.1_hiera_tiny.pt"]
    assert stat.S_IMODE(os.stat(path).st_mode) == plain_mode()  # a shared cache: readable as the umask says

    with pytest.raises(MatteBridgeError, match=r"sam2.1_hiera_small.pt: download failed \(.*404"):
        models.download("sam2.1_hiera_small")


def test_models_cli(tmp_path, http_server):
    env = {"MATTEBRIDGE_MODELS": str(tmp_path / "cache"), "MATTEBRIDGE_MODEL_BASE_URL": http_server[1]}
    code, out, _ = run_cli("models", "list", env=env)
    assert code == 0 and "sam2.1_hiera_base_plus" in out and "not downloaded" in out
    code, out, _ = run_cli("models", "path", "sam2.1_hiera_large", env=env)
    assert out.strip() == str(tmp_path / "cache" / "sam2.1_hiera_large.pt")
    code, _, err = run_cli("models", "download", "sam2.1_hiera_tiny", env=env)
    assert code != 0 and err.strip().splitlines()[-1].startswith("mattebridge: error: ") and "404" in err
    code, _, err = run_cli("models", "path", "sam3", env=env)
    assert code != 0 and "unknown model 'sam3'" in err
    code, _, err = run_cli("track", "p.####.exr", "--frames", "1-2", "--point", "1,1", "--out", "o.####.exr", env=env)
    assert code != 0  # the plate is missing: reported before the (absent) model is looked for
    assert "p.0001.exr: frame 1 is missing" in err


def test_prompts_json_round_trip_and_errors(tmp_path):
    p = Prompts()
    p.add_point("hero", 1001, 812, 540)
    p.add_point("hero", 1040, 300, 200, positive=False)
    p.set_box("hero", 1001, (700, 300, 1000, 900))
    p.set_mask("prop", 1010, "masks/prop.1010.exr")
    again = Prompts.from_json(p.to_json())
    assert again.to_json() == p.to_json() and again.frames() == [1001, 1010, 1040]
    for doc, message in [
        ({"objects": [{"name": "a", "frames": [{"frame": 1, "box": [5, 5, 1, 1]}]}]}, "X1>X0"),
        ({"objects": [{"frames": []}]}, "needs a string 'name'"),
        ({"version": 99, "objects": []}, "newer"),
        ({"objects": [{"name": "a b", "frames": [{"frame": 1, "points": [{"x": 1, "y": 1}]}]}]}, "object name"),
        ({"objects": [{"name": "a", "frames": [{"points": []}]}]}, "'frame'"),
        (  # a string is not a boolean: bool("false") would make a background click a foreground one
            {"objects": [{"name": "a", "frames": [{"frame": 1, "points": [{"x": 1, "y": 1, "positive": "false"}]}]}]},
            r"frames\[0\]: positive 'false': expected true or false",
        ),
        ({"objects": [{"name": "a", "frames": [{"frame": 1001.7, "points": []}]}]}, "frame 1001.7 is not a whole"),
        ({"objects": [{"name": "a", "frames": [{"frame": True, "points": []}]}]}, "frame True is not a whole"),
    ]:
        with pytest.raises(MatteBridgeError, match=message):
            Prompts.from_json(doc, "p.json")
    whole = {"objects": [{"name": "a", "frames": [{"frame": 1001.0, "points": [{"x": 1, "y": 1, "positive": False}]}]}]}
    assert Prompts.from_json(whole).objects["a"][1001].points[0].positive is False  # 1001.0 is frame 1001
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(MatteBridgeError, match="bad.json: not valid JSON"):
        Prompts.load(str(tmp_path / "bad.json"))


def test_a_cached_published_checkpoint_is_checked_at_load_and_download(checkpoint, tmp_path, monkeypatch):
    """A swapped or damaged file in the cache must not load under the published name and SHA-256 (which matte
    headers and resume keys carry): refused in one line at `download` and at every load."""
    monkeypatch.setenv("MATTEBRIDGE_MODELS", str(tmp_path))
    info = models.MODELS["sam2.1_hiera_tiny"]
    good = models.ModelInfo(info.name, info.config, models.sha256_of(checkpoint), info.size)
    monkeypatch.setitem(models.MODELS, "sam2.1_hiera_tiny", good)
    cached = models.model_path("sam2.1_hiera_tiny")
    os.makedirs(os.path.dirname(cached), exist_ok=True)
    with open(checkpoint, "rb") as src, open(cached, "wb") as dst:
        dst.write(src.read())
    loaded = models.load_model("sam2.1_hiera_tiny", image_size=128, device="cpu")
    assert loaded.sha256 == good.sha256 and models.download("sam2.1_hiera_tiny") == cached
    with open(cached, "r+b") as f:  # one byte changed
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    for call in (
        lambda: models.load_model("sam2.1_hiera_tiny", image_size=128, device="cpu"),
        lambda: models.download("sam2.1_hiera_tiny"),
    ):
        with pytest.raises(MatteBridgeError, match=r"sam2.1_hiera_tiny.pt: SHA-256 .* is not the published") as e:
            call()
        assert "\n" not in str(e.value) and "mattebridge models download sam2.1_hiera_tiny" in str(e.value)
