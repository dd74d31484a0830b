"""Errors the user sees, and how they are shown: one line naming the thing and the cause."""

MAX_LINE = 500


class ExtractionError(RuntimeError):
    """A run cannot be extracted; the message is one line naming the artifact and the cause."""


class TrackingStoreError(RuntimeError):
    """The tracking store cannot be read as it is (one-line message for the user)."""


class UsageError(RuntimeError):
    """Bad arguments or configuration: the command exits 2 with this one-line message."""


def one_line(exc: BaseException, *, with_type: bool = False) -> str:
    """An exception as one line: the cause (``Type: cause`` with ``with_type``), never a
    traceback, at most ``MAX_LINE`` characters."""
    message = " ".join(str(exc).split())
    if with_type:
        text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    else:
        text = message or type(exc).__name__
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."
