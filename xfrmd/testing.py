"""xfrmd's pytest plugin: emulated kernels for your tests (docs/tutorial.md).

Installed with xfrmd, it is loaded by every pytest run through the ``pytest11`` entry point;
there is nothing to declare. Fixtures:

``xfrmd_server``
    a server in a thread on the topology ``xfrmd_topology`` names (``default``, the embedded
    topology with nsim0, mlx5 ports, bonds…; or ``@pytest.mark.xfrmd_topology("bare")``, or
    a TOML file's path). ``.path``, ``.netlink(proto)``, ``.service()``, ``.env`` (the
    variables a program needs, LD_PRELOAD included) and ``.run(argv)`` (a real program, e.g.
    ``ip``, against it). When the test fails, its decoded netlink conversation is printed.
``xfrmd_env``
    ``os.environ`` plus what a real program needs to talk to ``xfrmd_server``.
``xfrmd_kernel``
    an in-process (sans-IO) kernel on a manual clock, same topology: no server, no sockets.
``kernel_pair``
    ``kernel_pair(device_kind="mlx5")`` — two real network namespaces joined by a veth, and
    an emulated kernel for each (see :class:`xfrmd.ike.pair.KernelPair` for bonds:
    ``slaves=``, ``lag_model=``). Skipped with the reason when this machine cannot make
    network namespaces (not root, no iproute2) — except under ``CI=true``, where it fails.
``charon``, ``pluto``
    ``charon(kp, "left", hw_offload="yes")`` starts strongSwan's charon (libreswan's pluto)
    on one side of a pair and stops it after the test; its log is printed when the test fails.

Helpers: :func:`assert_offloaded` / :func:`assert_not_offloaded` (both fail on an empty SAD).
``xfrmd_trio_server`` runs the server in the test's own trio nursery (pytest-trio).
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from . import shim
from .clock import ManualClock
from .ike import charon as charon_module
from .ike import pluto as pluto_module
from .shim import ShimError
from .topology import load_topology
from .trace import print_trace
from .trace_tap import TraceTap

if TYPE_CHECKING:
    from .embedded import ServerHandle
    from .ike.pair import KernelPair
    from .kernel import Kernel

# Start-up time: this plugin loads in every pytest run (the ``pytest11`` entry point), and
# trio with the kernel model and the server costs about 0.2 s. So :mod:`xfrmd.embedded`,
# :mod:`xfrmd.kernel`, :mod:`xfrmd.server` and :mod:`xfrmd.ike.pair` (which import them) are
# imported by the fixtures that use them, on first use; everything else is imported above.


def __getattr__(name: str) -> Any:
    """``ServerHandle``, ``make_kernel``, ``running_server`` from :mod:`xfrmd.embedded`,
    imported on first use (start-up time, above)."""
    if name in ("ServerHandle", "make_kernel", "running_server"):
        # start-up time: the pytest plugin loads the server only for a test that uses it
        from . import embedded
        return getattr(embedded, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def unavailable(why: str) -> NoReturn:
    """Skip, saying why; under CI=true fail instead (CI must not skip silently)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"required under CI=true: {why}", pytrace=False)
    pytest.skip(why)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "xfrmd_topology(name): the topology of the test's xfrmd_server and "
                   "xfrmd_kernel (a built-in name or a TOML file; default: default)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember each phase's outcome on the test item, for the fixtures' failure dumps."""
    outcome: Any = yield
    rep = outcome.get_result()
    setattr(item, "xfrmd_rep_" + rep.when, rep)


def _failed(request: pytest.FixtureRequest) -> bool:
    rep = getattr(request.node, "xfrmd_rep_call", None)
    return rep is not None and rep.failed


class TestServer:
    """A running server (:class:`xfrmd.embedded.ServerHandle`: ``.path``, ``.kernel``,
    ``.netlink(proto)``, ``.service()``…), and what a real program needs to reach it."""
    __test__ = False

    def __init__(self, handle: ServerHandle, netns: str = "default"):
        self._handle = handle
        self.kernel, self.path = handle.kernel, handle.path
        self._netns = netns
        self._preload: str | None = None
        self.tap: TraceTap | None = None        # the recorded conversation (xfrmd_server)

    @property
    def trace_path(self) -> str | None:
        """The recorded conversation as JSON lines (``xfrmd trace``'s input), up to now."""
        return self.tap.path if self.tap is not None else None

    def __getattr__(self, name: str) -> Any:
        if name == "_handle":                   # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self._handle, name)

    @property
    def env(self) -> dict[str, str]:
        """The variables a program needs: XFRMD_SOCKET, XFRMD_NETNS and LD_PRELOAD."""
        env = self.program_env()
        return {k: env[k] for k in ("XFRMD_SOCKET", "XFRMD_NETNS", "LD_PRELOAD")}

    @property
    def preload(self) -> str:
        """The preload shim (built on first use)."""
        if self._preload is None:
            try:
                self._preload = shim.path()
            except ShimError as e:
                unavailable(str(e))
        return self._preload

    def program_env(self, netns: str | None = None) -> dict[str, str]:
        env = dict(os.environ)
        pre = env.get("LD_PRELOAD")
        env.update(XFRMD_SOCKET=self.path, XFRMD_NETNS=netns or self._netns,
                   LD_PRELOAD=f"{self.preload} {pre}" if pre else self.preload)
        return env

    def run(self, argv: list[str], netns: str | None = None, *, check: bool = False,
            timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run a real program (``ip``, ``ethtool``, a daemon's tool) against this server,
        text output captured."""
        return subprocess.run(argv, env=self.program_env(netns), capture_output=True,
                              text=True, check=check, timeout=timeout, **kw)


@pytest.fixture
def xfrmd_topology(request: pytest.FixtureRequest) -> str:
    """The topology name (or TOML path) for xfrmd_server and xfrmd_kernel."""
    m = request.node.get_closest_marker("xfrmd_topology")
    return m.args[0] if m else "default"


@pytest.fixture
def xfrmd_server(request: pytest.FixtureRequest, tmp_path: Path,
                 xfrmd_topology: str) -> Iterator[TestServer]:
    """A server in a thread. Every netlink datagram is recorded; when the test fails, the
    decoded conversation is printed (pytest shows it with the failure) — ``xfrmd trace``'s
    format, one line per message."""
    from .embedded import make_kernel, running_server      # start-up time (top of the file)
    kernel = make_kernel(xfrmd_topology)
    path = str(tmp_path / "xfrmd.trace.jsonl")
    tap = TraceTap(path, kernel)
    kernel.tracers.append(tap.record)
    with running_server(kernel) as handle:
        server = TestServer(handle)
        server.tap = tap
        yield server
    tap.close()
    if _failed(request):
        sys.stderr.write(f"--- xfrmd: the test's netlink conversation ({path}) ---\n")
        print_trace(tap.keep(), sys.stderr)
    else:
        tap.discard()


@pytest.fixture
def xfrmd_env(xfrmd_server: TestServer) -> dict[str, str]:
    """``os.environ`` plus XFRMD_SOCKET, XFRMD_NETNS=default and the shim in LD_PRELOAD:
    ``subprocess.run(["ip", "xfrm", "state"], env=xfrmd_env)`` talks to xfrmd_server."""
    return xfrmd_server.program_env()


@pytest.fixture
def xfrmd_kernel(xfrmd_topology: str) -> Kernel:
    """An in-process kernel (sans-IO) on a manual clock: ``kernel.clock.advance(s)``."""
    from .kernel import Kernel                  # start-up time (top of the file)
    return Kernel(ManualClock(), topology=load_topology(xfrmd_topology), seed=1)


@pytest.fixture
def kernel_pair(request: pytest.FixtureRequest) -> Iterator[Callable[..., KernelPair]]:
    """``kp = kernel_pair(device_kind="veth", *, slaves=…, lag_model=…, …)``: a started
    :class:`xfrmd.ike.pair.KernelPair`, closed after the test (its netlink conversation
    printed if the test failed). A wrong argument shape raises ValueError/TypeError."""
    from .ike.pair import KernelPair, NamespaceError     # start-up time (top of the file)
    pairs: list[KernelPair] = []

    def make(device_kind: str = "veth", **kw: Any) -> KernelPair:
        kp = KernelPair(device_kind, **kw)
        try:
            kp.__enter__()
        except (NamespaceError, ShimError) as e:
            unavailable(str(e))
        pairs.append(kp)
        return kp

    yield make
    for kp in reversed(pairs):
        if _failed(request):
            kp.dump_trace(sys.stderr)
        kp.__exit__(None, None, None)


def _daemon_fixture(request: pytest.FixtureRequest, tmp_path: Path, module: ModuleType,
                    cls_name: str, what: str) -> Iterator[Callable[..., Any]]:
    daemons = []

    def make(kp: KernelPair, side: str, **kw: Any) -> Any:
        if not module.available():
            unavailable(f"needs {what}")
        d = getattr(module, cls_name)(kp.real, side, str(tmp_path), kp.env(side), **kw)
        daemons.append(d)
        d.start()
        return d

    yield make
    for d in reversed(daemons):
        d.stop()
        if _failed(request):
            sys.stderr.write(f"--- {cls_name.lower()} {d.side}: the end of its log ---\n"
                             + "\n".join(d.logtext().splitlines()[-80:]) + "\n")


@pytest.fixture
def charon(request: pytest.FixtureRequest, tmp_path: Path,
           kernel_pair: Callable[..., KernelPair]) -> Iterator[Callable[..., Any]]:
    """``charon(kp, side, **Charon options)``: a started strongSwan charon on ``side``
    (options in :class:`xfrmd.ike.charon.Charon`: hw_offload, esp_proposals, mode …)."""
    yield from _daemon_fixture(request, tmp_path, charon_module, "Charon",
                               "strongswan-charon and strongswan-swanctl")


@pytest.fixture
def pluto(request: pytest.FixtureRequest, tmp_path: Path,
          kernel_pair: Callable[..., KernelPair]) -> Iterator[Callable[..., Any]]:
    """``pluto(kp, side, **Pluto options)``: a started libreswan pluto on ``side`` (options in
    :class:`xfrmd.ike.pluto.Pluto`: ipsec.conf's conn keys with ``_`` for ``-``: type,
    nic_offload, esp …)."""
    yield from _daemon_fixture(request, tmp_path, pluto_module, "Pluto",
                               "libreswan's pluto (tools/test-all.sh extracts it; "
                               "$XFRMD_LIBRESWAN_DIR)")


def assert_offloaded(kp: KernelPair, side: str, dev: str | None = None, mode: str = "crypto") -> None:
    """Every SA of ``side`` is ``mode``-offloaded (crypto or packet) to ``dev`` (default: the
    pair's device on that side). Fails on an empty SAD."""
    kp.assert_offloaded(side, dev, mode)


def assert_not_offloaded(kp: KernelPair, side: str) -> None:
    """``side`` has SAs and none is offloaded. Fails on an empty SAD."""
    kp.assert_not_offloaded(side)


@pytest.fixture
async def xfrmd_trio_server(nursery: Any, tmp_path: Path, xfrmd_topology: str) -> TestServer:
    from .embedded import ServerHandle, make_kernel     # start-up time (top of the file)
    from .server import Server
    kernel = make_kernel(xfrmd_topology)
    path = str(tmp_path / "xfrmd.sock")
    server = Server(kernel, path)
    await nursery.start(server.serve)
    return TestServer(ServerHandle(kernel, path))
