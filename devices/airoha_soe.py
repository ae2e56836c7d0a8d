"""Airoha EN7581 Secure Offload Engine (the posted patches; docs/bonding.md): packet offload
only, IPv4 outer tunnel mode, one engine with 32 SA slots shared by all its ports, opted in to
the proposed LAG flags (lower handle + shared state), compatible only within one engine."""
from __future__ import annotations

import errno as E
from typing import TYPE_CHECKING, Any, Callable

from netlink_codec import xfrm as X
from xfrmd.xfrm.offload import xfrm_dev_flush, xfrm_dev_lower_dev_handle

from .features import HW_ESP
from .xfrmdev import (LAG_GUARANTEES, XFRM_DEV_OFFLOAD_IN, XFRM_DEV_OFFLOAD_OUT,
                      XFRM_DEV_OFFLOAD_PACKET, XFRMDEV_OPS_F_LAG_SHARED_STATE,
                      XFRMDEV_OPS_F_LOWER_HANDLE, XfrmDevOps, hw_replay_window, refuse)

if TYPE_CHECKING:
    from xfrmd.kernel import Kernel

    from .netdev import NetDevice

AIROHA_SOE_NUM_SA = 32
INF = X.XFRM_INF
EOPNOTSUPP = E.EOPNOTSUPP
_ALLOWED_FLAGS = X.XFRM_STATE_DECAP_DSCP | X.XFRM_STATE_NOPMTUDISC | X.XFRM_STATE_AF_UNSPEC | \
    X.XFRM_STATE_ESN


class SoeEngine:
    """The SoC's engine: one table for every port."""

    def __init__(self, name: str):
        self.name = name
        self.slots: list[dict[str, Any] | None] = [None] * AIROHA_SOE_NUM_SA


def soe_engine(kernel: "Kernel | None", nic: str) -> SoeEngine:
    """The engine of the SoC ``nic`` (every port of one NIC shares it): the driver's state
    in ``kernel.drivers["airoha-soe"]`` (engines by NIC name), made on first use; a port
    outside any kernel gets an engine of its own."""
    if kernel is None:
        return SoeEngine(nic)
    engines = kernel.drivers.setdefault("airoha-soe", {})
    assert isinstance(engines, dict)
    engine = engines.get(nic)
    if engine is None:
        engine = engines[nic] = SoeEngine(nic)
    return engine


_U64_MAX = (1 << 64) - 1


def soe_replay_window(x: Any) -> int:
    """The window the SA's hardware checks (``airoha_soe_build_replay``, fbfe8f9): 0 when
    the state has none or is outbound, else 64 × (min((w - 1) / 64, 3) + 1)."""
    if x.xso.dir != XFRM_DEV_OFFLOAD_IN:
        return 0
    r = x.replay_esn
    w = int(r.replay_window if r is not None else x.replay_window)
    return 64 * (min((w - 1) // 64, 3) + 1) if w else 0


def hw_limits(x: Any) -> dict[str, int]:
    """The byte and packet thresholds the SA's hardware is programmed with
    (``airoha_soe_limit``: XFRM_INF → U64_MAX)."""
    lft = x.lft
    return {k: _U64_MAX if v == INF else int(v) for k, v in (
        ("soft_byte_limit", lft.soft_byte_limit), ("hard_byte_limit", lft.hard_byte_limit),
        ("soft_packet_limit", lft.soft_packet_limit),
        ("hard_packet_limit", lft.hard_packet_limit))}


class SoeIpsec(XfrmDevOps):
    name = "airoha-soe"
    module = "airoha_eth"
    flags = XFRMDEV_OPS_F_LOWER_HANDLE | XFRMDEV_OPS_F_LAG_SHARED_STATE
    has_policy_ops = True
    has_offload_ok = True
    has_lag_compatible = True
    has_packet_xmit = True          # GSO segmented in software; the core accounts (X05)
    # the review's proposal (LAG_GUARANTEES, not a kernel ABI): the ports of one engine keep
    # one SA entry, so one sequence and one replay state (P42's shared state)
    lag_guarantees = frozenset(LAG_GUARANTEES)

    def __init__(self, engine: SoeEngine):
        self.engine = engine

    def lag_compatible(self, other: object) -> bool:
        """Both ports' ops on the same engine."""
        return isinstance(other, SoeIpsec) and other.engine is self.engine

    def xdo_dev_offload_ok(self, x: Any) -> bool:
        """The SOE's offload_ok: packet offload, direction out, the SA alive (VALID) and
        HW_ESP on ``xso.dev``."""
        xso = x.xso
        f = xso.dev.features
        return (xso.type == XFRM_DEV_OFFLOAD_PACKET and xso.dir == XFRM_DEV_OFFLOAD_OUT
                and x.km_state == 2 and (f is None or f.active("esp-hw-offload")))

    def xdo_dev_state_lag_compatible(self, dev: "NetDevice", peer_dev: "NetDevice") -> bool:
        """``xdo_dev_state_lag_compatible`` (P42): both ports resolve to one ``airoha_eth``."""
        return self.lag_compatible(peer_dev.xfrmdev_ops)

    def build_sa(self, x: Any) -> None:
        """``airoha_soe_build_sa`` / ``_build_algo`` / ``_build_replay``: the checks, in the
        driver's order. The ESN message, the programmed byte/packet limits and the accepted
        replay windows follow the snapshot the review reply links (OpenW1700k-test fbfe8f9);
        the ECN, SA-flag, use-time and import refusals are only in the later public series
        (046edd1, pending-6.18/9999-31), kept from there."""
        if x.xso.type != XFRM_DEV_OFFLOAD_PACKET:
            refuse("SOE supports XFRM packet offload only", EOPNOTSUPP)
        if x.xso.dir not in (XFRM_DEV_OFFLOAD_IN, XFRM_DEV_OFFLOAD_OUT):
            refuse("SOE supports in/out SAs only", EOPNOTSUPP)
        if x.id.proto != X.IPPROTO_ESP:
            refuse("SOE supports ESP only", EOPNOTSUPP)
        if x.family != X.AF_INET:
            refuse("SOE bring-up supports IPv4 outer tunnel only", EOPNOTSUPP)
        if x.mode != X.XFRM_MODE_TUNNEL:
            refuse("SOE supports tunnel mode only", EOPNOTSUPP)
        if x.encap is not None and x.encap.encap_type != X.UDP_ENCAP_ESPINUDP:
            refuse("SOE supports native ESP or UDP_ENCAP_ESPINUDP", EOPNOTSUPP)
        if x.tfcpad:
            refuse("SOE does not support TFC padding", EOPNOTSUPP)
        if x.flags & X.XFRM_STATE_NOECN:
            refuse("SOE cannot disable ECN processing", EOPNOTSUPP)
        if x.flags & ~_ALLOWED_FLAGS:
            refuse("SOE does not support the requested SA flags", EOPNOTSUPP)
        if x.extra_flags & ~X.XFRM_SA_XFLAG_DONT_ENCAP_DSCP:
            refuse("SOE does not support the requested extra SA flags", EOPNOTSUPP)
        lft = x.lft
        # byte and packet limits are not refused: airoha_soe_build_sa programs them into the
        # SA's hardware thresholds (BCNT_THSHD_* / SEQ_THSHD_*, XFRM_INF → all ones) in the
        # snapshot the review reply names (OpenW1700k-test fbfe8f9, 9999-05 "net: airoha: add
        # SOE provider implementation"); see hw_limits()
        if lft.soft_use_expires_seconds or lft.hard_use_expires_seconds:
            refuse("SOE does not support use-time lifetime limits", EOPNOTSUPP)
        if x.curlft.bytes or x.curlft.packets:
            refuse("SOE cannot import non-zero lifetime counters", EOPNOTSUPP)
        if x.aead is not None:
            if x.aead.name != "rfc4106(gcm(aes))":
                refuse("SOE supports rfc4106(gcm(aes)) AEAD only", EOPNOTSUPP)
            if x.aead.key_len < 32:
                refuse("invalid AEAD key length", E.EINVAL)
            if x.aead.key_len - 32 not in (128, 192, 256):
                refuse("SOE supports AES-128/192/256 keys only", EOPNOTSUPP)
            if x.aead.icv_len not in (64, 96, 128):
                refuse("SOE supports 64/96/128-bit GCM ICV only", EOPNOTSUPP)
        else:
            if x.enc is None or x.enc.name != "cbc(aes)":
                refuse("SOE supports cbc(aes) encryption only", EOPNOTSUPP)
            if x.enc.key_len not in (128, 192, 256):
                refuse("SOE supports AES-128/192/256 keys only", EOPNOTSUPP)
            if x.auth is None:
                refuse("SOE CBC mode requires HMAC authentication", EOPNOTSUPP)
            if x.auth.name == "hmac(sha1)":
                if x.auth.trunc_len != 96:
                    refuse("SOE supports HMAC-SHA1-96 only", EOPNOTSUPP)
            elif x.auth.name == "hmac(sha256)":
                if x.auth.trunc_len != 128:
                    refuse("SOE supports HMAC-SHA256-128 only", EOPNOTSUPP)
            else:
                refuse("SOE supports HMAC-SHA1/SHA256 only", EOPNOTSUPP)
        # airoha_soe_build_replay (fbfe8f9): ESN by flag or replay mode, its own message
        if x.flags & X.XFRM_STATE_ESN:
            refuse("SOE ESN is not supported yet", EOPNOTSUPP)
        r = x.replay_esn
        if (r is not None and (r.seq or r.oseq or r.seq_hi or r.oseq_hi)) or any(x.replay[:2]):
            refuse("SOE cannot import non-zero replay state", EOPNOTSUPP)
        # every replay window is accepted (fbfe8f9's airoha_soe_build_replay): a non-zero one
        # turns ANTI_RPLY_EN on with the window code min((w - 1) / 64, 3), so the hardware
        # checks 64, 128, 192 or 256 packets (soe_replay_window)

    def _existing(self, x: Any) -> dict[str, Any] | None:
        for s in self.engine.slots:
            if s is not None and s["x"] is not x and s["key"] == (x.mark, x.id.daddr, x.id.spi, x.id.proto):
                return s
        return None

    def xdo_dev_state_add(self, dev: "NetDevice", x: Any) -> None:
        if self._existing(x) is not None:
            refuse("SOE requires delete-and-add for SA updates", EOPNOTSUPP)
        # XFRMDEV_OPS_F_LAG_SHARED_STATE: a state an upper device (a bond replicating it)
        # already installed through another port of this engine is the same hardware SA,
        # so the port shares its slot and handle instead of taking a second one
        for i, s in enumerate(self.engine.slots):
            if s is not None and s["x"] is x and x.xso.dev is not dev and dev.name not in s["ports"]:
                s["ports"].append(dev.name)
                x.xso.offload_handle = i + 1
                return
        self.build_sa(x)
        try:
            i = self.engine.slots.index(None)
        except ValueError:
            refuse(None, E.ENOSPC)
        self.engine.slots[i] = {"x": x, "key": (x.mark, x.id.daddr, x.id.spi, x.id.proto),
                                "port": dev.name, "ports": [dev.name], "spi": x.id.spi,
                                "dir": "in" if x.xso.dir == XFRM_DEV_OFFLOAD_IN else "out",
                                # the SA record's sequence / anti-replay / lifetime words
                                "oseq": 0, "rx_seq": 0, "rx_bitmap": 0, "packets": 0,
                                "bytes": 0, "replay_drops": 0,
                                "window": soe_replay_window(x), **hw_limits(x)}
        # the driver's handle is its SA entry (a pointer, never 0): slot index + 1 here
        x.xso.offload_handle = i + 1

    def xdo_dev_state_delete(self, dev: "NetDevice", x: Any) -> None:
        i = x.xso.offload_handle - 1
        if 0 <= i < AIROHA_SOE_NUM_SA and self.engine.slots[i] is not None \
                and self.engine.slots[i]["x"] is x:
            s = self.engine.slots[i]
            if dev.name in s["ports"] and len(s["ports"]) > 1:
                s["ports"].remove(dev.name)      # other ports still share the hardware SA
                s["port"] = s["ports"][0]
                return
            self.engine.slots[i] = None

    # -- the data path (emulation): every handle lookup goes through the resolver (P42) ----
    def _slot(self, dev: "NetDevice", x: Any, errno: int) -> tuple[int, dict[str, Any]]:
        """The engine slot port ``dev`` resolves ``x`` to with
        ``xfrm_dev_state_lower_handle`` (P42: "all handle lookups go through it"); a port
        of another engine, or a bond slave the bond gives no handle, finds none."""
        h = xfrm_dev_lower_dev_handle(x, dev)
        i = h - 1
        s = self.engine.slots[i] if 0 <= i < AIROHA_SOE_NUM_SA else None
        if s is None or s["x"] is not x:
            refuse(f"xfrmd: SOE {self.engine.name} holds no SA for this state on {dev.name}",
                   errno)
        return h, s

    def hw_xmit(self, dev: "NetDevice", x: Any, nbytes: int, account: Callable[[], Any] | None,
                spray: Any = None) -> tuple["NetDevice", int | None]:
        """TX through the engine slot. Where the core keeps the accounting of the one state
        (``xdo_dev_packet_xmit``: X05) the slot carries the number the core gave; under an
        upper without it (an RFC bond) the slot's own counter numbers the packet, one counter
        per engine slot, so the ports of one engine share it."""
        _, s = self._slot(dev, x, E.EHOSTUNREACH)
        if account is not None:
            s["oseq"], s["core"] = account(), True
            hw_seq = None
        else:
            s["oseq"] += 1
            hw_seq = s["oseq"]
        s["packets"] += 1
        s["bytes"] += nbytes
        return dev, hw_seq

    def hw_recv(self, dev: "NetDevice", x: Any, rx_dev: "NetDevice", seq: int, nbytes: int,
                account: Callable[[], Any] | None) -> None:
        """RX on any port of the engine (P42: "RX accepts the state when its GDM is on the
        same eth"): the slot's anti-replay window (ANTI_RPLY_EN) decides, engine-wide;
        with the core's accounting (X06) the software window of the one state decides."""
        h, s = self._slot(rx_dev, x, 0)
        if account is not None:
            account()
            s["rx_seq"], s["core"] = max(s["rx_seq"], seq), True
        else:
            why, s["rx_seq"], s["rx_bitmap"] = hw_replay_window(s["rx_seq"], s["rx_bitmap"],
                                                                s["window"], seq)
            if why:
                s["replay_drops"] += 1
                refuse(f"airoha_eth: hardware replay drop in {self.engine.name} slot {h} "
                       f"on {rx_dev.name}: {why}", 0)
        s["packets"] += 1
        s["bytes"] += nbytes

    def hw_traffic(self, dev: "NetDevice", x: Any, packets: int, nbytes: int) -> None:
        """``xfrmd ctl offload-traffic``: packets through the slot."""
        _, s = self._slot(dev, x, E.EOPNOTSUPP)
        if x.xso.dir != XFRM_DEV_OFFLOAD_IN:
            s["oseq"] += packets
        s["packets"] += packets
        s["bytes"] += nbytes

    def hw_context(self, dev: "NetDevice", x: Any) -> dict[str, Any] | None:
        """The engine slot: one context for every port of the engine that resolves it."""
        h = xfrm_dev_lower_dev_handle(x, dev)
        i = h - 1
        s = self.engine.slots[i] if 0 <= i < AIROHA_SOE_NUM_SA else None
        if s is None or s["x"] is not x:
            return None
        return {"id": f"{self.engine.name} slot {h}", "scope": "engine",
                "ports": list(s["ports"]), "handle": h, "dir": s["dir"], "oseq": s["oseq"],
                "window": s["window"], "top": s["rx_seq"], "bitmap": s["rx_bitmap"],
                "bytes": s["bytes"], "packets": s["packets"],
                "replay_drops": s["replay_drops"],
                "numbered_by": "core" if s.get("core") else "hardware"}

    def xdo_dev_policy_add(self, dev: "NetDevice", pol: Any) -> None:
        if pol.xdo.type != XFRM_DEV_OFFLOAD_PACKET:
            refuse("SOE supports XFRM packet policies only", EOPNOTSUPP)
        if pol.dir >= 3:
            refuse("SOE does not offload socket policies", EOPNOTSUPP)
        if any(t.proto != X.IPPROTO_ESP for t in pol.templates):
            refuse("SOE offloads ESP policies only", EOPNOTSUPP)
        if pol.xdo.dir == XFRM_DEV_OFFLOAD_IN:
            refuse("SOE requires software inbound XFRM policies", EOPNOTSUPP)
        if pol.xdo.dir != XFRM_DEV_OFFLOAD_OUT:
            refuse("SOE offloads outbound policies only", EOPNOTSUPP)

    def active_sas(self, dev: "NetDevice") -> int:
        return sum(1 for s in self.engine.slots if s is not None and dev.name in s["ports"])

    def table(self, dev: "NetDevice") -> list[dict[str, Any]]:
        return [{"handle": i + 1, "spi": s["spi"], "dir": s["dir"], "port": s["port"]}
                | ({"ports": ",".join(s["ports"])} if len(s["ports"]) > 1 else {})
                | ({"replay_window": s["window"]} if s["window"] else {})
                | {k: v for k, v in s.items() if k.endswith("_limit") and v != _U64_MAX}
                for i, s in enumerate(self.engine.slots) if s is not None]


def soe_set_features(dev: "NetDevice", features: int) -> int:
    """The SOE's ndo_set_features: an esp-hw-offload change while the port holds SAs is
    refused with EBUSY."""
    f = dev.features
    ops = dev.xfrmdev_ops
    assert f is not None and isinstance(ops, SoeIpsec), dev
    if bool(features & HW_ESP) != f.active("esp-hw-offload") and ops.active_sas(dev):
        return E.EBUSY
    return 0


def soe_netdev_event(event: str, dev: "NetDevice", **info: Any) -> None:
    """The SOE patches' notifier (the netdevice chain at NETDEV_PRI_DRIVER): a port whose
    esp-hw-offload goes off loses its offloaded states and policies (set_features already
    refused the change while it held SAs)."""
    if event != "NETDEV_FEAT_CHANGE" or not isinstance(dev.xfrmdev_ops, SoeIpsec):
        return
    if dev.features is not None and not dev.features.active("esp-hw-offload"):
        xfrm_dev_flush(dev)
