"""Everything Nuke imports must be Python 3.9 (Nuke 14); init.py and menu.py stay light."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "nuke"))
from nuke_harness import PLUGIN, REPO, install_standin  # noqa: E402

PLUGIN_FILES = sorted(PLUGIN.rglob("*.py"))


def test_there_is_a_plugin_to_check():
    names = {p.relative_to(PLUGIN).as_posix() for p in PLUGIN_FILES}
    assert {
        "init.py",
        "menu.py",
        "mattebridge_nuke/__init__.py",
        "mattebridge_nuke/node.py",
        "mattebridge_nuke/callbacks.py",
        "mattebridge_nuke/jobs.py",
    } <= names


@pytest.mark.parametrize("path", PLUGIN_FILES, ids=lambda p: p.relative_to(PLUGIN).as_posix())
def test_plugin_file_is_python_3_9(path):
    ast.parse(path.read_text(encoding="utf-8"), str(path), feature_version=(3, 9))


def test_python_3_9_check_can_fail():
    with pytest.raises(SyntaxError):
        ast.parse("match x:\n    case 1:\n        pass\n", feature_version=(3, 9))


def test_the_client_modules_nuke_loads_are_python_3_9():
    """What `mattebridge_nuke.jobs` pulls in from mattebridge (the client and what it imports)."""
    code = (
        "import sys; sys.path.insert(0, %r); import mattebridge_nuke.jobs, mattebridge.core.wire.client, "
        "mattebridge.core.errors; print('\\n'.join(m.__file__ for n, m in sys.modules.items() "
        "if n.startswith('mattebridge') and getattr(m, '__file__', None)))" % str(PLUGIN)
    )
    files = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    core = [f for f in files if f.startswith(str(REPO / "core"))]
    assert any(f.endswith("client.py") for f in core), files
    for f in core:
        ast.parse(Path(f).read_text(encoding="utf-8"), f, feature_version=(3, 9))
    heavy = subprocess.run(
        [sys.executable, "-c", code + "; import sys; print('torch' in sys.modules, 'OpenImageIO' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert heavy.strip().endswith("False False"), "the plugin's imports must not load torch or OpenImageIO"


def test_scripts_stored_in_the_node_are_python_3_9():
    install_standin()
    from mattebridge_nuke import node

    ast.parse(node.KNOB_CHANGED, feature_version=(3, 9))
    ast.parse(node.ON_CREATE, feature_version=(3, 9))
    ast.parse(node._cmd("preview(nuke.thisNode())"), feature_version=(3, 9))


def test_menu_adds_the_entry_without_importing_the_plugin(monkeypatch):
    nuke = install_standin()
    for name in [m for m in sys.modules if m.startswith("mattebridge_nuke")]:
        monkeypatch.delitem(sys.modules, name)  # put back after the test
    exec(compile((PLUGIN / "menu.py").read_text(), "menu.py", "exec"), {"__name__": "menu"})
    assert not [m for m in sys.modules if m.startswith("mattebridge_nuke")]
    command = nuke.menu("Nodes").standin_items()["MatteBridge"].standin_items()["MatteBridge"]
    exec(command, {})
    groups = [n for n in nuke.root().nodes() if n.Class() == "Group"]
    assert len(groups) == 1 and "mb_version" in groups[0].knobs()


def test_init_adds_the_client_folders_to_sys_path(tmp_path, monkeypatch):
    install_standin()
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setenv("MATTEBRIDGE_PYTHONPATH", str(site))
    monkeypatch.setattr(sys, "path", list(sys.path))
    exec(
        compile((PLUGIN / "init.py").read_text(), str(PLUGIN / "init.py"), "exec"),
        {"__name__": "init", "__file__": str(PLUGIN / "init.py")},
    )
    assert str(site) in sys.path
    # without __file__ (some Nuke versions), the plugin folder is found on nuke.pluginPath()
    bundled = PLUGIN / "site-packages"
    monkeypatch.setenv("MATTEBRIDGE_PYTHONPATH", "")
    bundled.mkdir(exist_ok=False)
    try:
        exec(compile((PLUGIN / "init.py").read_text(), "init.py", "exec"), {"__name__": "init"})
        assert str(bundled) in sys.path
    finally:
        bundled.rmdir()
