"""Exception types shared across layers (stdlib only)."""


class TraderError(Exception):
    """Base class of the daemon's own errors."""


class FrameError(TraderError):
    """A websocket frame or REST body that does not match the wire format.

    `reason` is a short, stable label the feed counts bad frames by.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


def describe_error(exc: BaseException) -> str:
    """The exception's type and the first line of its message, for logs and status."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
