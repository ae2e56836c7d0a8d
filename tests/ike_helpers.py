"""What the tests with real IKE daemons share: waiting for a daemon to do something, the
SPIs of a SAD, the daemon logs printed when a test fails, and the checks that skip a test this
machine cannot run (fail it under CI=true, see :func:`tests.conftest.require`)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Iterable, Iterator

from xfrmd.ike import charon, pluto
from xfrmd.ike.charon import Charon
from xfrmd.ike.pair import KernelPair
from xfrmd.ike.pluto import Pluto

from .conftest import require


def wait(cond: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1) -> Any:
    """``cond()``'s first true value within ``timeout`` seconds (polled every ``interval``),
    else its value once more after the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    return cond()


def spis(sas: Iterable[dict]) -> list[tuple]:
    """(src, dst, spi) of each SA, sorted: what two SADs are compared by."""
    return sorted((s["src"], s["dst"], s["spi"]) for s in sas)


def require_root() -> None:
    require(os.geteuid() == 0, "needs root for network namespaces")


def require_pluto() -> None:
    require(pluto.available(), "needs the extracted libreswan (tools/test-all.sh)")


def require_charon() -> None:
    require(charon.available(), "needs strongswan-charon and strongswan-swanctl")


def print_logs(daemons: Iterable[Any]) -> None:
    """The end of each daemon's log (None: a daemon that was never made), for a failed test."""
    for d in daemons:
        if d is not None:
            print(f"---- {type(d).__name__} {d.side} log ----\n{d.logtext()[-6000:]}")


GCM_CHARON, GCM_PLUTO = "aes128gcm16", "aes_gcm128"
PACKET, INBOUND = 4, 2          # XFRM_OFFLOAD_PACKET, XFRM_OFFLOAD_INBOUND


class Pair:
    """Two daemons (``make(kp, side, tmp)`` each) in a KernelPair: the responder (right)
    started first; both stopped and the namespaces removed on the way out, the end of each
    daemon's log printed when the block failed."""

    def __init__(self, tmp_path: Any, left: Callable, right: Callable,
                 setup: Callable[[KernelPair], Any] | None = None, **kp: Any):
        """``setup(kp)`` runs once the emulated kernels exist, before the daemons are made."""
        self.kp, self.tmp, self.make = KernelPair(**kp), str(tmp_path), (left, right)
        self.setup = setup
        self.daemons: list[Any] = []

    def __enter__(self) -> Pair:
        self.kp.__enter__()
        try:
            if self.setup is not None:
                self.setup(self.kp)
            for side, make in zip(("left", "right"), self.make):
                d = make(self.kp, side, self.tmp)
                self.daemons.append(d)
            for d in reversed(self.daemons):      # the responder first
                d.start()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def log_tail(self, d: Any) -> str:
        """What a failed block prints of daemon ``d``'s log."""
        origin = f" ({d.install.origin})" if getattr(d, "install", None) else ""
        return f"---- {type(d).__name__} {d.side}{origin} ----\n{d.logtext()[-5000:]}"

    def __exit__(self, *exc: Any) -> None:
        try:
            for d in self.daemons:
                d.stop()
            if exc[0] is not None:
                for d in self.daemons:
                    print(self.log_tail(d))
        finally:
            self.kp.__exit__(*exc)

    @property
    def left(self) -> Any:
        return self.daemons[0]

    @property
    def right(self) -> Any:
        return self.daemons[1]


def charon6(**kw: Any) -> Callable:
    return lambda kp, side, tmp: Charon(kp.real, side, tmp, kp.env(side),
                                        userland="trixie-strongswan", **kw)


def charon5(**kw: Any) -> Callable:
    return lambda kp, side, tmp: Charon(kp.real, side, tmp, kp.env(side), **kw)


def pluto5(**kw: Any) -> Callable:
    return lambda kp, side, tmp: Pluto(kp.real, side, tmp, kp.env(side),
                                       userland="trixie-libreswan", **kw)


def pluto4(**kw: Any) -> Callable:
    return lambda kp, side, tmp: Pluto(kp.real, side, tmp, kp.env(side), **kw)


@contextlib.contextmanager
def stuck_initiation(left: Pluto) -> Iterator[subprocess.Popen]:
    """pluto's ``whack --initiate`` on ``left`` when the Child SA is refused, which leaves
    whack waiting for ever: the block runs once the log of ``left`` says the IKE_SA's state
    transition failed (asserted, within 10 s); whack is killed after it."""
    whack = subprocess.Popen(left._wrap(f"{left.install.paths['whack']} --ctlsocket "
                                        f"{left.ctl} --name peer --initiate"),
                             env=left._env, stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        assert wait(lambda: "state transition function for ESTABLISHED_IKE_SA had "
                            "internal error" in left.logtext(), timeout=10)
        yield whack
    finally:
        os.killpg(whack.pid, signal.SIGKILL)
        whack.wait()
