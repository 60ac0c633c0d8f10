"""The exception types: ``MaskrtError`` for the user's mistakes, ``InternalError`` for maskrt's own bugs.

A ``MaskrtError`` means the user passed something maskrt cannot work with (a bad file, a bad option, an
image of the wrong shape, a backend that is not installed). Its message is one line that names the problem
and, where there is one, the fix; the CLI prints it and exits with status 2. An ``InternalError`` (or any other
exception) is a bug: it keeps its traceback.
"""


class MaskrtError(ValueError):
    """A user mistake, with a message that names the problem and, where there is one, the fix."""


class InternalError(RuntimeError):
    """A broken invariant inside maskrt (a bug, not a user mistake)."""


def one_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class MaskrtWarning(UserWarning):
    """A notice for the user (not a failure): the CLI prints it as one ``note:`` line, the Python API as a
    warning the caller can filter."""
