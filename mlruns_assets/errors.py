"""The one error type for bad input: a run cannot be extracted."""


class ExtractionError(RuntimeError):
    """A run cannot be extracted; the message is one line naming the artifact and the cause."""
