"""netdevsim's IPsec offload (drivers/net/netdevsim/ipsec.c): crypto offload only, 33 SAs per
port, rfc4106(gcm(aes)) with a 128-bit ICV and a 128-bit key (+32-bit salt), the TX check
counter, and the debugfs ``ipsec`` file with the text the driver prints."""
from __future__ import annotations

import errno as E
import ipaddress
import struct
from typing import TYPE_CHECKING, Any

from netlink_codec import xfrm as X
from xfrmd.xfrm.offload import xfrm_dev_lower_dev_handle

from .xfrmdev import XFRM_DEV_OFFLOAD_CRYPTO, XFRM_DEV_OFFLOAD_IN, XfrmDevOps, refuse

if TYPE_CHECKING:
    from .netdev import NetDevice

NSIM_IPSEC_MAX_SA_COUNT = 33
NSIM_IPSEC_VALID = 1 << 31


class NsimSA:
    """``struct nsim_sa``."""
    __slots__ = ("used", "rx", "ipaddr", "family", "spi", "proto", "salt", "key", "crypt")
    used: bool
    rx: bool
    ipaddr: bytes
    family: int
    spi: int
    proto: int
    salt: int
    key: tuple[int, ...]
    crypt: int


class NsimIpsec(XfrmDevOps):
    """One netdevsim port's SA table (``struct nsim_ipsec``). Only add and delete exist."""
    name = "netdevsim"
    module = "netdevsim"
    flags = 0                   # no LAG opt-in: a LAG bond refuses it
    has_state_free = False      # nsim_xfrmdev_ops: add and delete only

    def __init__(self, dev_id: int = 0, port: int = 0):
        self.dev_id, self.port_index = dev_id, port
        self.sa: list[NsimSA | None] = [None] * NSIM_IPSEC_MAX_SA_COUNT
        self.count = 0
        self.tx = 0

    def _parse_key(self, x: Any) -> tuple[tuple[int, ...], int] | None:
        """``nsim_ipsec_parse_proto_keys``: (key words, salt) or a refusal."""
        a = x.aead
        if a is None:
            return None            # "Unsupported IPsec algorithm"
        if a.icv_len != 128:
            return None            # "IPsec offload requires 128 bit authentication"
        if a.name != "rfc4106(gcm(aes))":
            return None            # "Unsupported IPsec algorithm - please use rfc4106(gcm(aes))"
        if a.key_len < 128:
            return None            # "IPsec hw offload only supports 128 bit keys with optional 32 bit salt"
        key = a.key[:16]
        salt = struct.unpack("=I", a.key[16:20])[0] if a.key_len > 128 else 0
        return struct.unpack("=4I", key), salt

    def xdo_dev_state_add(self, dev: "NetDevice", x: Any) -> None:
        if x.id.proto not in (X.IPPROTO_ESP, X.IPPROTO_AH):
            refuse("Unsupported protocol for ipsec offload")
        if x.comp is not None:
            refuse("Compression offload not supported")
        if x.xso.type != XFRM_DEV_OFFLOAD_CRYPTO:
            refuse("Unsupported ipsec offload type")
        try:
            i = self.sa.index(None)
        except ValueError:
            refuse("No space for SA in Rx table!", E.ENOSPC)
        parsed = self._parse_key(x)
        if parsed is None:
            refuse("Failed to get key data for SA table")
        s = NsimSA()
        s.used, s.rx = True, x.xso.dir == XFRM_DEV_OFFLOAD_IN
        s.family = x.family
        s.ipaddr = x.id.daddr
        s.spi, s.proto = x.id.spi, x.id.proto
        s.key, s.salt = parsed
        s.crypt = int(x.enc is not None or x.aead is not None)
        self.sa[i] = s
        self.count += 1
        x.xso.offload_handle = i | NSIM_IPSEC_VALID

    def xdo_dev_state_delete(self, dev: "NetDevice", x: Any) -> None:
        i = x.xso.offload_handle & ~NSIM_IPSEC_VALID
        if 0 <= i < NSIM_IPSEC_MAX_SA_COUNT and self.sa[i] is not None:
            self.sa[i] = None
            self.count -= 1

    def tx_check(self, dev: "NetDevice", x: Any) -> bool:
        """``nsim_ipsec_tx`` for a packet carrying state ``x`` on port ``dev``: counts what
        passes. netdevsim has no XFRMDEV_OPS_F_LOWER_HANDLE, so the handle is
        ``xso.offload_handle`` (what ``xfrm_dev_lower_dev_handle`` gives it): under a bond
        that holds only while the bond keeps the slave's own handle there (active-backup)."""
        h = xfrm_dev_lower_dev_handle(x, dev) if x.xso else 0
        i = h & ~NSIM_IPSEC_VALID if h & NSIM_IPSEC_VALID else -1
        if not (0 <= i < NSIM_IPSEC_MAX_SA_COUNT) or self.sa[i] is None:
            return False
        if x.id.proto not in (X.IPPROTO_ESP, X.IPPROTO_AH):
            return False
        self.tx += 1
        return True

    def hw_traffic(self, dev: "NetDevice", x: Any, packets: int, nbytes: int) -> None:
        """Only transmitted skbs pass ``nsim_ipsec_tx``; netdevsim counts nothing on RX and
        keeps no byte counters (crypto offload: the stack accounts lifetimes itself)."""
        if x.xso.dir == XFRM_DEV_OFFLOAD_IN:
            refuse("xfrmd: netdevsim counts transmitted packets only: this SA is offloaded "
                   "dir in; send through its dir out partner", E.EOPNOTSUPP)
        for _ in range(packets):
            self.tx_check(dev, x)

    def hw_context(self, dev: "NetDevice", x: Any) -> dict[str, Any] | None:
        """The port's SA table entry (netdevsim keeps no sequence, replay or per-SA
        counters: crypto offload, the stack numbers and checks)."""
        h = xfrm_dev_lower_dev_handle(x, dev) if x.xso else 0
        i = h & ~NSIM_IPSEC_VALID
        if not h & NSIM_IPSEC_VALID or not 0 <= i < NSIM_IPSEC_MAX_SA_COUNT or self.sa[i] is None:
            return None
        return {"id": f"{dev.name} sa[{i}]", "scope": "port", "ports": [dev.name], "handle": h}

    def debugfs(self) -> str:
        """``nsim_dbg_netdev_ops_read``."""
        lines = [f"SA count={self.count} tx={self.tx}"]
        for i, s in enumerate(self.sa):
            if s is None:
                continue
            if s.family == X.AF_INET6:
                addr = str(ipaddress.IPv6Address(bytes(s.ipaddr[:16])))
            else:
                addr = str(ipaddress.IPv4Address(bytes(s.ipaddr[:4])))
            lines.append(f"sa[{i}] {'rx' if s.rx else 'tx'} ipaddr={addr}")
            lines.append(f"sa[{i}]    spi=0x{s.spi:08x} proto=0x{s.proto:x} "
                         f"salt=0x{s.salt:08x} crypt={s.crypt}")
            lines.append(f"sa[{i}]    key=0x{s.key[0]:08x} {s.key[1]:08x} {s.key[2]:08x} "
                         f"{s.key[3]:08x}")
        return "\n".join(lines) + "\n"

    def table(self, dev: "NetDevice") -> list[dict[str, Any]]:
        return [{"handle": i | NSIM_IPSEC_VALID, "spi": s.spi, "dir": "rx" if s.rx else "tx",
                 "port": dev.name} for i, s in enumerate(self.sa) if s is not None]
