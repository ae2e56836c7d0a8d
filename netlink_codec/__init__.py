"""Pure netlink wire format: framing, the XFRM, rtnetlink and genetlink families. No I/O."""
from .errors import DecodeError  # noqa: F401
