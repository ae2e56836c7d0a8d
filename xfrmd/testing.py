"""Test helpers: start an xfrmd server on a temporary socket and talk to it.

Use as a pytest plugin (``pytest_plugins = ["xfrmd.testing"]``) or call
:func:`running_server` directly::

    def test_something(xfrmd_server):
        with xfrmd_server.netlink(NETLINK_XFRM) as nl:
            nl.request(...)

``xfrmd_server`` runs the server in a thread (for blocking clients and real programs);
``xfrmd_trio_server`` runs it in the test's own trio nursery (pytest-trio).
"""
from __future__ import annotations

import pytest

from .embedded import ServerHandle, make_kernel, running_server  # noqa: F401 (re-exported)


@pytest.fixture
def xfrmd_server():
    with running_server() as handle:
        yield handle


@pytest.fixture
async def xfrmd_trio_server(nursery, tmp_path):
    from .server import Server
    kernel = make_kernel()
    path = str(tmp_path / "xfrmd.sock")
    server = Server(kernel, path)
    await nursery.start(server.serve)
    return ServerHandle(kernel, path)
