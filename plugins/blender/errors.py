"""The one error type the add-on reports to the user (status bar / operator report), never as a traceback."""

from mattebridge.core.errors import MatteBridgeError


class PluginError(MatteBridgeError):
    """Something about the scene, the strip or the prompts that the user can fix; the message says what."""
