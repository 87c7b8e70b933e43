"""The one exception type users see: its message is printed as a single line, never a traceback."""


class MatteBridgeError(Exception):
    """An expected failure (bad input, missing file, unknown name). The message names the culprit."""
