"""The exceptions users see: each message is printed as a single line, never a traceback."""


class MatteBridgeError(Exception):
    """An expected failure (bad input, missing file, unknown name). The message names the culprit."""


class FieldError(MatteBridgeError):
    """Bad input in one field of a job, named as on the wire ("layout", "out"). The message is the field's name
    followed by `detail`; the command line shows its own flag in place of the name (cli.main.FLAGS)."""

    code = "bad_field"  # the wire's error code for it

    def __init__(self, field: str, detail: str):
        super().__init__(field + detail)
        self.field, self.detail = field, detail
