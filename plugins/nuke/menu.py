# MatteBridge for Nuke: the menu entry (GUI sessions only). Nothing heavy is imported until it is used.
import nuke

nuke.menu("Nodes").addMenu("MatteBridge").addCommand(
    "MatteBridge", "import mattebridge_nuke.node\nmattebridge_nuke.node.create_node()"
)
