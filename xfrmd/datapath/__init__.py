"""A small emulated ESP data path: enough to watch sequence numbers, anti-replay windows and
byte/packet lifetimes of (replicated) SAs move, as the LAG offload debate needs."""


from typing import Any  # noqa: E402


def init(kernel: Any) -> None:
    """The data path's service ops and MIB files."""
