"""Object names: the Nuke and Resolve plugins carry pure-Python copies of core's one grammar
(mattebridge.core.wire.prompts.OBJECT_NAME) and refuse other names in the host, naming the object."""

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "nuke"))
from nuke_harness import REPO, install_standin  # noqa: E402

from mattebridge.core.wire import prompts as core_prompts  # noqa: E402
from mattebridge_nuke import prompts as nuke_prompts  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "mattebridge_resolve_script_names", REPO / "plugins" / "resolve" / "MatteBridge.py"
)
resolve_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(resolve_script)


def test_the_plugins_copies_are_cores_grammar():
    assert nuke_prompts.OBJECT_NAME.pattern == core_prompts.OBJECT_NAME.pattern
    assert resolve_script.OBJECT_NAME.pattern == core_prompts.OBJECT_NAME.pattern
    assert nuke_prompts.OBJECT_NAME.flags == resolve_script.OBJECT_NAME.flags == core_prompts.OBJECT_NAME.flags


@pytest.mark.parametrize(
    "name, ok",
    [
        ("hero", True),
        ("prop.v2", True),
        ("-x", True),
        ("_", True),
        ("a" * 64, True),
        ("a" * 65, False),
        (".hidden", False),
        ("a/b", False),
        ("", False),
        ("h\u00e9ro", False),
        ("a b", False),
    ],
)
def test_both_plugins_agree_with_core(name, ok):
    assert bool(core_prompts.OBJECT_NAME.fullmatch(name)) == ok
    assert (nuke_prompts.name_problem(name) is None) == ok
    assert (resolve_script.name_problem(name) is None) == ok


def test_nuke_names_the_object_in_one_line():
    install_standin()
    from mattebridge_nuke import node as mbnode
    from mattebridge_nuke.prompts import ObjectKnobs, PromptError, canonical

    with pytest.raises(PromptError, match=r"^object name '\.hidden': use 1-64 letters") as e:
        canonical([ObjectKnobs(".hidden")])
    assert "\n" not in str(e.value)
    nuke = sys.modules["nuke"]
    group = mbnode.create_node()
    nuke.standin_user_set(group["o1_name"], "x" * 65)  # renamed in the panel: knobChanged rebuilds
    assert group["status"].value().startswith("error: object name 'xxx") and "1-64" in group["status"].value()
    assert not [n for n in group.nodes() if n.Class() == "Read"]  # no Read for a name that is not a path
