#!/usr/bin/env python3
"""Build the installable MatteBridge extension .zip for Blender (docs/blender.md).

    python plugins/blender/build.py [--out DIR] [--platform linux-x64 ...] [--wheel-cache DIR]

The wheels listed in blender_manifest.toml are the single source of truth: pyzmq is downloaded from PyPI for
Python 3.11 (Blender 4.2-5.0) on every platform whose wheel is listed (`pip download --only-binary=:all:
--platform ... --python-version 3.11`), and the `mattebridge` base wheel (numpy + pyzmq, no torch) is built
from this repository with `pip wheel --no-deps`. Blender ships numpy. A build for some platforms only keeps
the wheels those platforms use and narrows the manifest's `platforms` (as Blender's --split-platforms does).
Needs Python >= 3.11 (tomllib) with pip; network access to PyPI for wheels not yet in the cache.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MANIFEST = "blender_manifest.toml"
EXCLUDE_FILES = {"build.py"}
EXCLUDE_DIRS = {"__pycache__", "build", "dist", "wheels"}
PYTHON_VERSION = "3.11"
# Blender platform -> wheel platform tags (as Blender's extension tooling maps them)
PLATFORM_TAGS = {
    "linux-x64": ("manylinux", "x86_64"),
    "macos-arm64": ("macosx", "arm64", "universal2"),
    "macos-x64": ("macosx", "x86_64", "universal2"),
    "windows-x64": ("win", "amd64"),
}


class BuildError(Exception):
    pass


def wheel_parts(filename: str):
    """(distribution, version, python tag, abi tag, platform tag) of a wheel file name."""
    parts = filename[:-4].split("-")
    if not filename.endswith(".whl") or len(parts) not in (5, 6):
        raise BuildError(f"{filename}: not a wheel file name")
    return parts[0], parts[1], parts[-3], parts[-2], parts[-1]


def wheel_platforms(filename: str):
    """Blender platforms a wheel serves (all of them for a pure-Python wheel)."""
    platform_tag = wheel_parts(filename)[4]
    if platform_tag == "any":
        return set(PLATFORM_TAGS)
    found = set()
    for tag in platform_tag.split("."):
        for platform, (os_prefix, *machines) in PLATFORM_TAGS.items():
            if tag.startswith(os_prefix) and any(tag.endswith(m) for m in machines):
                found.add(platform)
    return found


def read_manifest(path: str) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def pip(*args) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise BuildError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def project_version() -> str:
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["version"]


def fetch_wheel(filename: str, cache: str) -> str:
    """The exact wheel `filename` in `cache`: downloaded from PyPI, or (mattebridge) built from this repo."""
    dist, version, py_tag, abi_tag, platform_tag = wheel_parts(filename)
    target = os.path.join(cache, filename)
    if dist == "mattebridge":
        if version != project_version():
            raise BuildError(
                f"{MANIFEST} lists {filename} but pyproject.toml is at version {project_version()}: "
                "update the manifest's wheels"
            )
        with tempfile.TemporaryDirectory() as tmp:
            try:  # the repo's own build backend (setuptools) is usually there already: no network needed
                pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp, REPO)
            except BuildError:
                pip("wheel", "--no-deps", "-q", "-w", tmp, REPO)
            built = [n for n in os.listdir(tmp) if n.endswith(".whl")]
            if built != [filename]:
                raise BuildError(f"built {built}, expected {filename}")
            shutil.copy(os.path.join(tmp, filename), target)
        return target
    if os.path.exists(target):
        return target
    args = [
        "download",
        "-q",
        "--only-binary=:all:",
        "--no-deps",
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        "--abi",
        abi_tag,
        "-d",
        cache,
    ]
    for tag in platform_tag.split("."):
        args += ["--platform", tag]
    pip(*args, f"{dist}=={version}")
    if not os.path.exists(target):
        got = sorted(n for n in os.listdir(cache) if n.startswith(f"{dist}-{version}-"))
        raise BuildError(f"pip did not fetch {filename} (cache holds {got}): update {MANIFEST}'s wheels")
    return target


def manifest_text(source: str, wheels, platforms) -> str:
    """The manifest with `wheels` and `platforms` set to what this build bundles."""
    text = open(source, encoding="utf-8").read()
    listing = "wheels = [\n" + "".join(f'  "./wheels/{w}",\n' for w in wheels) + "]"
    text, n = re.subn(r"(?ms)^wheels\s*=\s*\[.*?\]", lambda m: listing, text, count=1)
    if n != 1:
        raise BuildError(f"{MANIFEST}: no wheels = [...] list")
    plats = "platforms = [" + ", ".join(f'"{p}"' for p in platforms) + "]"
    text, n = re.subn(r"(?m)^platforms\s*=\s*\[.*?\]", lambda m: plats, text, count=1)
    if n != 1:
        raise BuildError(f"{MANIFEST}: no platforms = [...] list")
    return text


def addon_files():
    for root, dirs, files in os.walk(HERE):
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDE_DIRS and not d.startswith("."))
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(root, name), HERE)
            if rel in EXCLUDE_FILES or name == MANIFEST or name.endswith((".pyc", ".zip")):
                continue
            yield rel


def build(out_dir: str, platforms=None, cache=None) -> str:
    manifest_path = os.path.join(HERE, MANIFEST)
    manifest = read_manifest(manifest_path)
    all_platforms = list(manifest.get("platforms") or PLATFORM_TAGS)
    platforms = list(platforms or all_platforms)
    unknown = [p for p in platforms if p not in all_platforms]
    if unknown:
        raise BuildError(f"platform(s) {unknown}: the manifest supports {all_platforms}")
    listed = [os.path.basename(w) for w in manifest.get("wheels", [])]
    wanted = [w for w in listed if wheel_platforms(w) & set(platforms)]
    for p in platforms:
        if not any(p in wheel_platforms(w) for w in listed if not w.startswith("mattebridge-")):
            raise BuildError(f"{MANIFEST} lists no pyzmq wheel for {p}")
    cache = cache or os.path.join(HERE, "build", "wheels")
    os.makedirs(cache, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    paths = [fetch_wheel(w, cache) for w in wanted]
    suffix = "" if set(platforms) == set(all_platforms) else "-" + "_".join(platforms)
    out = os.path.join(out_dir, f"{manifest['id']}-{manifest['version']}{suffix}.zip")
    tmp = out + ".part"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(MANIFEST, manifest_text(manifest_path, wanted, platforms))
        for rel in addon_files():
            z.write(os.path.join(HERE, rel), rel.replace(os.sep, "/"))
        for path in paths:
            z.write(path, "wheels/" + os.path.basename(path))
    os.replace(tmp, out)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out", default=os.path.join(HERE, "dist"), help="folder for the .zip (default plugins/blender/dist)"
    )
    p.add_argument(
        "--platform",
        action="append",
        choices=sorted(PLATFORM_TAGS),
        help="build for these platforms only (repeatable; default: every platform in the manifest)",
    )
    p.add_argument("--wheel-cache", help="folder for downloaded wheels (default plugins/blender/build/wheels)")
    args = p.parse_args(argv)
    try:
        print(build(args.out, args.platform, args.wheel_cache))
    except BuildError as e:
        print(f"build.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
