"""The one exception type for user mistakes.

A ``MaskrtError`` means the user passed something maskrt cannot work with (a bad file, a bad option, an
image of the wrong shape, a backend that is not installed). The CLI prints it as one line and exits
non-zero; anything else that escapes is a bug and keeps its traceback.
"""


class MaskrtError(ValueError):
    """A user mistake, with a message that names the problem and, where there is one, the fix."""
