"""The driver side of IPsec offload, modelled on ``struct xfrmdev_ops``.

A driver subclasses :class:`XfrmDevOps` and overrides what it implements; an op left as
``None`` is absent (the core checks presence, e.g. no ``xdo_dev_state_advance_esn`` means no
crypto offload with ESN). ``flags`` carries the proposed LAG opt-ins. Refusals are
:class:`~xfrmd.errors.KernelError` with the driver's errno and its own extack text
(:func:`refuse`)."""
from __future__ import annotations

import errno as E
from typing import TYPE_CHECKING, Any, Callable, NoReturn

from xfrmd.errors import KernelError

if TYPE_CHECKING:
    from .netdev import NetDevice

# xfrmdev_ops.flags as published: BIT(0) in the RFC's patch 1/4, BIT(1) in the later public
# (shared-state) series. The review reply's XFRMDEV_OPS_F_LAG_SHARED_TX_SEQ / _RX_REPLAY are
# "only illustrative" names with no values: xfrmd models them as LAG_GUARANTEES below.
XFRMDEV_OPS_F_LOWER_HANDLE = 1 << 0
XFRMDEV_OPS_F_LAG_SHARED_STATE = 1 << 1

# xfrmd's model of the review's proposal (not a kernel ABI): the guarantees a lower driver
# may declare for a LAG upper's state (``XfrmDevOps.lag_guarantees``), which a bond can
# require (``xfrmd ctl lag-model BOND replicated --require tx-seq,rx-replay``).
# tx-seq: one outbound sequence state across the ports it is LAG-compatible with;
# rx-replay: one replay state for inbound packets of the SA across those ports.
LAG_GUARANTEES = ("tx-seq", "rx-replay")



def xfrmdev_flag_names(flags: int) -> str:
    """``flags`` as the ``XFRMDEV_OPS_F_*`` names this module defines, joined with ``|``
    (``LOWER_HANDLE|LAG_SHARED_STATE``); bits without a name in hex; "-" for none."""
    names = []
    for name, bit in sorted(((n, v) for n, v in globals().items()
                             if n.startswith("XFRMDEV_OPS_F_") and isinstance(v, int)),
                            key=lambda nv: nv[1]):
        if flags & bit:
            names.append(name[len("XFRMDEV_OPS_F_"):])
            flags &= ~bit
    if flags:
        names.append(f"{flags:#x}")
    return "|".join(names) or "-"


XFRM_DEV_OFFLOAD_IN, XFRM_DEV_OFFLOAD_OUT, XFRM_DEV_OFFLOAD_FWD = 1, 2, 3
XFRM_DEV_OFFLOAD_CRYPTO, XFRM_DEV_OFFLOAD_PACKET = 1, 2
XFRM_DEV_OFFLOAD_FLAG_ACQ = 1        # xso.flags: a larval state made by xfrm_state_find


def hw_replay_window(top: int, bitmap: int, window: int, seq: int
                     ) -> tuple[str | None, int, int]:
    """A hardware anti-replay context (mlx5's ASO, an SOE IN SA, a bond replica's): is
    ``seq`` acceptable given the right edge ``top`` and ``bitmap`` (bit i = top - i seen)?
    Returns (None, new top, new bitmap) or (why, top, bitmap)."""
    if not window:
        return None, max(top, seq), bitmap
    if seq == 0:
        return "sequence number 0", top, bitmap
    if seq > top:
        shift = seq - top
        nb = ((bitmap << shift) | 1) & ((1 << window) - 1) if shift < window else 1
        return None, seq, nb
    diff = top - seq
    if diff >= window:
        return f"sequence {seq} left of the window (top {top})", top, bitmap
    if bitmap >> diff & 1:
        return f"sequence {seq} already received", top, bitmap
    return None, top, bitmap | (1 << diff)


class OffloadError(KernelError):
    """Transitional name of a driver's refusal: a :class:`KernelError` whose third
    positional argument is ``module`` (whose NL_SET_ERR_MSG_MOD prefix the message carries
    when it is not the called device's driver: a bond passing its slave's extack through).
    New code raises and catches :class:`KernelError`."""
    def __init__(self, errno: int, msg: str | None = None, module: str | None = None):
        super().__init__(errno, msg, module=module)


def refuse(msg: str | None, errno: int = E.EINVAL) -> NoReturn:
    """A driver refuses: ``errno`` with its extack message."""
    raise OffloadError(errno, msg)


class XfrmDevOps:
    """Base of a driver's ops. Methods are called with the device and the state/policy; the
    driver keeps its hardware tables on itself (``self``) or on the port."""
    flags = 0
    name = "xfrmdev"
    module = ""           # KBUILD_MODNAME: NL_SET_ERR_MSG_MOD prefixes it
    # which optional ops exist (the core tests for them like the kernel tests pointers)
    has_advance_esn = False
    has_policy_ops = False
    has_update_stats = False
    has_offload_ok = False
    has_lower_handle = False      # proposed LAG op: uppers (bonds) only, lowers must not
    has_state_free = True         # xdo_dev_state_free (netdevsim has none)
    has_lag_compatible = False    # proposed xdo_dev_state_lag_compatible (lowers)
    # the review's proposal as xfrmd models it (LAG_GUARANTEES): what this port keeps in one
    # context with the ports xdo_dev_state_lag_compatible accepts; a topology entry's
    # ``lag_guarantees`` replaces the driver's declaration
    lag_guarantees: frozenset[str] = frozenset()
    # xdo_dev_packet_xmit (the LAG tree's X01): the core then keeps the software accounting
    # of a packet-offloaded state (X05 xfrm_dev_packet_state_check) instead of the hardware
    has_packet_xmit = False

    def xdo_dev_state_add(self, dev: "NetDevice", x: Any) -> None:
        refuse(None, E.EOPNOTSUPP)

    def xdo_dev_state_delete(self, dev: "NetDevice", x: Any) -> None:
        pass

    def xdo_dev_state_free(self, dev: "NetDevice", x: Any) -> None:
        pass

    def xdo_dev_offload_ok(self, x: Any) -> bool:
        return True

    def xdo_dev_state_advance_esn(self, x: Any) -> None:
        pass

    def xdo_dev_state_update_stats(self, x: Any) -> None:
        pass

    def xdo_dev_policy_add(self, dev: "NetDevice", pol: Any) -> None:
        refuse("Policy offload is not supported")

    def xdo_dev_policy_delete(self, dev: "NetDevice", pol: Any) -> None:
        pass

    def xdo_dev_policy_free(self, dev: "NetDevice", pol: Any) -> None:
        pass

    def xdo_dev_state_lower_handle(self, dev: "NetDevice", x: Any, lower_dev: "NetDevice") -> int:
        """The proposed op, implemented by an upper device only (``has_lower_handle``):
        the hardware handle ``lower_dev`` holds for the upper-owned state ``x``."""
        return 0

    def xdo_dev_state_lag_compatible(self, dev: "NetDevice", peer_dev: "NetDevice") -> bool:
        """The newest LAG series' op: do ``dev`` and ``peer_dev`` share one hardware XFRM
        context? Only meaningful with ``has_lag_compatible``."""
        return False

    def xdo_dev_lag_esp_eligible(self, dev: "NetDevice") -> bool:
        """An upper device (a bond) only: may its esp-hw-offload be on with its lowers as
        they are (``bond_lag_esp_eligible``)? Asked by ``bond_fix_features``."""
        return False

    def xdo_dev_lag_flush(self, dev: "NetDevice") -> None:
        """An upper device (a bond) only: flush the states offloaded to it, adds blocked
        meanwhile (``bond_ipsec_lag_begin_flush`` + ``xfrm_dev_state_flush`` + end);
        ``bond_set_features`` calls it when esp-hw-offload goes off."""

    # emulation: packets crossing the hardware with state ``x`` (xfrmd ctl offload-traffic)
    def hw_traffic(self, dev: "NetDevice", x: Any, packets: int, nbytes: int) -> None:
        refuse(f"xfrmd: {self.name} keeps no per-SA traffic counters", E.EOPNOTSUPP)

    def hw_xmit(self, dev: "NetDevice", x: Any, nbytes: int,
                account: Callable[[], Any] | None, spray: Any = None
                ) -> tuple["NetDevice", int | None]:
        """Emulation (xfrmd.datapath): one packet of the packet-offloaded state ``x`` leaves
        through port ``dev``. A lower driver finds its hardware SA with
        ``xfrm_dev_state_lower_handle(x, dev)`` (RFC patch 1/4: "the lower device they are
        transmitting or receiving on"), which is ``xso.offload_handle`` when ``x`` is
        offloaded to ``dev`` itself. ``account``: the core's software accounting of the one
        state (VALID, lifetimes, sequence number, curlft: the LAG tree's
        ``xfrm_dev_packet_state_check``), which runs when the device the state is offloaded
        to has ``xdo_dev_packet_xmit``; None when it does not (an RFC bond hands the packet
        to its slave): then the driver's hardware context numbers it. Returns (the port the
        packet left through, the ESP sequence number the hardware gave it, or None when the
        core numbered it). OffloadError drops the packet (errno 0: silently, as a hardware
        rule drops)."""
        self._hw_count(dev, x, nbytes, account)
        return dev, None

    def hw_recv(self, dev: "NetDevice", x: Any, rx_dev: "NetDevice", seq: int, nbytes: int,
                account: Callable[[], Any] | None) -> None:
        """Emulation (xfrmd.datapath): one packet of the packet-offloaded IN state ``x``
        arrives on port ``rx_dev``. With ``account`` (the LAG tree's
        ``xfrm_dev_packet_input_state_check``: replay check, lifetime, advance, curlft on the
        one state) the core decides; otherwise the driver's hardware replay context of the
        SA ``xfrm_dev_state_lower_handle(x, rx_dev)`` resolves to (:meth:`hw_context` names
        it). KernelError(0, why) drops it."""
        self._hw_count(dev, x, nbytes, account)

    def _hw_count(self, dev: "NetDevice", x: Any, nbytes: int,
                  account: Callable[[], Any] | None) -> None:
        """The core's accounting where it runs, then the hardware's counters (a driver
        without counters keeps none)."""
        if account is not None:
            account()
        try:
            self.hw_traffic(dev, x, 1, nbytes)
        except KernelError:
            pass

    def hw_context(self, dev: "NetDevice", x: Any) -> dict[str, Any] | None:
        """Observability: the hardware context port ``dev`` uses for ``x`` (the one
        ``xfrm_dev_state_lower_handle(x, dev)`` resolves to): ``id`` (the same for every
        port sharing it), ``oseq``, the replay ``window``/``top``/``bitmap``, ``bytes``,
        ``packets``; None when the port holds none."""
        return None

    # observability (xfrmd ctl show-offload)
    def table(self, dev: "NetDevice") -> list[dict[str, Any]]:
        return []
