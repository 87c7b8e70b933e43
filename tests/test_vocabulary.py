"""One vocabulary: the plugins that cannot import core (Nuke, Resolve) keep copies of its words, compared here
with the one definition (mattebridge.core.wire.vocabulary); the command line and the server read it directly."""

import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "nuke"))
from nuke_harness import REPO, install_standin  # noqa: E402

from mattebridge.core.wire import vocabulary  # noqa: E402


def test_nukes_copies_are_the_vocabulary():
    install_standin()
    from mattebridge_nuke import keys, node, nukehost

    assert tuple(node.EDGE_MODES) == vocabulary.EDGE_MODES
    assert tuple(keys.DIRECTIONS) == vocabulary.DIRECTIONS
    assert nukehost.DEFAULT_ADDRESS == vocabulary.DEFAULT_ADDRESS


def test_resolves_copy_is_the_vocabulary():
    spec = importlib.util.spec_from_file_location(
        "mattebridge_resolve_vocabulary", REPO / "plugins" / "resolve" / "MatteBridge.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.DEFAULTS["server"] == vocabulary.DEFAULT_ADDRESS


def test_the_command_line_offers_exactly_the_vocabulary():
    from mattebridge.cli.main import build_parser

    track = build_parser()._subparsers._group_actions[0].choices["track"]
    choices = {a.dest: tuple(a.choices) for a in track._actions if a.choices}
    assert choices == {
        "direction": vocabulary.DIRECTIONS,
        "edge": vocabulary.EDGE_MODES,
        "layout": vocabulary.LAYOUTS,
        "matte_channels": vocabulary.MATTE_CHANNELS,
    }
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    assert serve.get_default("bind") == vocabulary.DEFAULT_ADDRESS
