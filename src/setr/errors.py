"""User-facing errors: the CLI prints their message as one line and exits non-zero, without a traceback."""


class SetrError(Exception):
    """A problem with the user's input (a file, an option, a checkpoint), described in one line."""
