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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember each phase's outcome on the test item, for the fixtures' failure dumps."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "xfrmd_rep_" + rep.when, rep)


@pytest.fixture
def xfrmd_server(request, tmp_path):
    """A server in a thread. Every netlink datagram is recorded; when the test fails, the
    decoded conversation is printed (pytest shows it with the failure) — ``xfrmd trace``'s
    format, one line per message."""
    from .embedded import make_kernel as _make
    from .trace import TraceWriter, print_trace
    kernel = _make()
    path = str(tmp_path / "xfrmd.trace.jsonl")
    tracer = TraceWriter.open(path, kernel)
    kernel.tracers.append(tracer)
    with running_server(kernel) as handle:
        handle.trace_path = path
        yield handle
    tracer.out.close()
    rep = getattr(request.node, "xfrmd_rep_call", None)
    if rep is not None and rep.failed:
        import sys
        sys.stderr.write(f"--- xfrmd: the test's netlink conversation ({path}) ---\n")
        print_trace(path, sys.stderr)


@pytest.fixture
async def xfrmd_trio_server(nursery, tmp_path):
    from .server import Server
    kernel = make_kernel()
    path = str(tmp_path / "xfrmd.sock")
    server = Server(kernel, path)
    await nursery.start(server.serve)
    return ServerHandle(kernel, path)
