"""The layers of docs/architecture.md §1, pinned: each layer is imported in a fresh interpreter and must not
reach a layer (or a heavy library) it may not. A host's Python loads core/wire: it must stay numpy + pyzmq."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "sam2", "OpenImageIO", "PyOpenColorIO", "PySide6")
ALL_CORE = (
    "mattebridge.core.image",
    "mattebridge.core.matte",
    "mattebridge.core.engine",
    "mattebridge.core.track",
    "mattebridge.core.farm",
    "mattebridge.core.picker",
    "mattebridge.server",
    "mattebridge.cli",
)


def loaded_after_import(module: str):
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def modules_of(package: str):
    folder = REPO / package.replace("mattebridge.", "").replace(".", "/")
    return [f"{package}.{p.stem}" for p in sorted(folder.glob("*.py")) if p.stem != "__init__"]


def reached(loaded, forbidden):
    return sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden))


@pytest.mark.parametrize(
    "module", ["mattebridge.core.errors", "mattebridge.core.paths"] + modules_of("mattebridge.core.wire")
)
def test_wire_and_base_reach_nothing_above_them(module):
    assert reached(loaded_after_import(module), HEAVY + ALL_CORE) == []


@pytest.mark.parametrize("module", modules_of("mattebridge.core.image"))
def test_image_reaches_no_model_matte_or_track(module):
    assert reached(loaded_after_import(module), ("torch", "sam2", "PySide6") + ALL_CORE[1:]) == []


@pytest.mark.parametrize("module", modules_of("mattebridge.core.matte") + modules_of("mattebridge.core.engine"))
def test_matte_and_engine_reach_no_track_server_or_cli(module):
    assert reached(loaded_after_import(module), ("PySide6",) + ALL_CORE[3:]) == []


@pytest.mark.parametrize("module", modules_of("mattebridge.core.track"))
def test_track_reaches_neither_server_nor_cli(module):
    assert reached(loaded_after_import(module), ("PySide6", "mattebridge.server", "mattebridge.cli")) == []


@pytest.mark.parametrize("module", modules_of("mattebridge.core.farm"))
def test_farm_reaches_no_model_server_or_cli(module):  # a farm task runs track through the CLI, in its own process
    assert (
        reached(loaded_after_import(module), ("torch", "sam2", "PySide6", "mattebridge.server", "mattebridge.cli"))
        == []
    )


def test_the_server_does_not_reach_the_cli():
    assert reached(loaded_after_import("mattebridge.server.worker"), ("mattebridge.cli", "PySide6")) == []


@pytest.mark.parametrize("module", ["mattebridge.server.app", "mattebridge.server.main"])
def test_the_server_front_holds_no_model(module):  # the model lives in the device processes (server/device.py)
    assert reached(loaded_after_import(module), HEAVY + ("mattebridge.core.engine", "mattebridge.server.worker")) == []


def test_every_folder_is_in_the_architecture_document():
    doc = (REPO / "docs" / "architecture.md").read_text()
    folders = [
        p.relative_to(REPO).as_posix() + "/"
        for p in (REPO / "core").iterdir()
        if p.is_dir() and (p / "__init__.py").exists()
    ] + ["server/", "cli/"]
    assert [f for f in folders if f"`{f}`" not in doc] == []
    for package in ("core.wire", "core.image", "core.matte", "core.engine", "core.track", "server"):
        for module in modules_of(f"mattebridge.{package}"):
            assert module.rsplit(".", 1)[1] in doc, f"{module} is not on the map in docs/architecture.md"
