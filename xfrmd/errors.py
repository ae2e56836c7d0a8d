"""The one error type of the emulated kernel.

Anything in the model that fails raises :class:`KernelError` with the errno the kernel
returns and what its extack would say; each entry point converts it exactly once: the
netlink receive loop into NLMSG_ERROR with the extack TLVs (``netlink_rcv_msg`` in
xfrmd/netlink/core.py), the service connection into ``{"errno", "error"}``
(``handle`` in xfrmd/services.py), the ioctl service into its errno."""
from __future__ import annotations

import errno as E


class KernelError(Exception):
    """``-errno`` with ``NL_SET_ERR_MSG``/``NL_SET_BAD_ATTR`` data.

    ``msg``: the extack message (None: the kernel sets none); ``offset``: NLMSGERR_ATTR_OFFS
    of the bad attribute from the request's nlmsghdr; ``policy``/``miss_type``/
    ``miss_nest``/``cookie``: the other extack TLVs; ``module``: which part of the model
    refused (a driver or subsystem name, for logs and ``--json`` output; never on the wire);
    ``echo``: the request as the handler left it when it changed it in place before failing
    (the error echoes that buffer, as ``validate_tmpl`` does with template families)."""

    def __init__(self, errno: int, msg: str | None = None, *, offset: int | None = None,
                 policy: bytes | None = None, miss_type: int | None = None,
                 miss_nest: int | None = None, cookie: bytes | None = None,
                 module: str | None = None, echo: bytes | bytearray | None = None):
        errno = abs(errno)
        super().__init__(msg or E.errorcode.get(errno, str(errno)))
        self.errno = errno
        self.msg = msg
        self.offset = offset
        self.policy = policy
        self.miss_type = miss_type
        self.miss_nest = miss_nest
        self.cookie = cookie
        self.module = module
        self.echo = echo

    def extack(self) -> dict:
        """The extack fields that are set, as keyword arguments of ``ExtAck``."""
        fields = {"msg": self.msg, "offset": self.offset, "policy": self.policy,
                  "miss_type": self.miss_type, "miss_nest": self.miss_nest,
                  "cookie": self.cookie}
        return {k: v for k, v in fields.items() if v is not None}

    def service(self) -> dict:
        """The answer of a service op (docs/protocol.md): errno and the message."""
        return {"errno": self.errno, "error": str(self)}
