"""IP-TFS mode (net/xfrm/xfrm_iptfs.c): the SA configuration part — ``iptfs_user_init``
defaults and checks, ``iptfs_copy_to_user`` — and the ESP header length it is checked
against. The IP-TFS data path (aggregation, fragmentation, reordering) is not emulated."""
from __future__ import annotations

import errno as E
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netlink_codec import netlink as N
from netlink_codec import xfrm as X

from ..errors import KernelError

if TYPE_CHECKING:
    from .request import XfrmRequest
    from .state import SecurityAssociation

A = X.Xfrma

# IP-TFS defaults (tunnel egress: drop time, reorder window; ingress: delay, queue)
DEFAULT_DROP_TIME_USECS = 1000000
DEFAULT_REORDER_WINDOW = 3
DEFAULT_INIT_DELAY_USECS = 0
DEFAULT_MAX_QUEUE_SIZE = 1024 * 10240

# crypto_aead_ivsize of the transforms esp_init_state builds (seqiv/echainiv templates)
_IVSIZE = {"rfc4106(gcm(aes))": 8, "rfc4309(ccm(aes))": 8, "rfc4543(gcm(aes))": 8,
           "rfc7539esp(chacha20,poly1305)": 8, "ecb(cipher_null)": 0, "cbc(des)": 8,
           "cbc(des3_ede)": 8, "cbc(cast5)": 8, "cbc(blowfish)": 8, "cbc(aes)": 16,
           "cbc(serpent)": 16, "cbc(camellia)": 16, "cbc(twofish)": 16,
           "rfc3686(ctr(aes))": 8, "cbc(sm4)": 16}


@dataclass
class IptfsConfig:
    drop_time_us: int = DEFAULT_DROP_TIME_USECS
    reorder_window: int = DEFAULT_REORDER_WINDOW
    dont_frag: bool = False
    init_delay_us: int = DEFAULT_INIT_DELAY_USECS
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    pkt_size: int = 0


def header_len(x: SecurityAssociation) -> int:
    """``x->props.header_len`` after ``esp_init_state`` and ``__iptfs_init_state``: ESP header
    + IV, UDP/TCP encapsulation, then the outer IP header and the IP-TFS header."""
    alg = x.aead if x.aead is not None else x.enc
    n = 8 + (_IVSIZE.get(alg.name, 0) if alg is not None else 0)
    if x.encap is not None:
        n += 8 if x.encap.encap_type == X.UDP_ENCAP_ESPINUDP else 2
    return n + (20 if x.family == X.AF_INET else 40) + 4


def user_init(req: XfrmRequest, x: SecurityAssociation) -> None:
    """``iptfs_user_init``."""
    at = req.attrs
    c = IptfsConfig()
    if A.IPTFS_DONT_FRAG in at:
        c.dont_frag = True
    if A.IPTFS_REORDER_WINDOW in at:
        c.reorder_window = req.attr_u32(A.IPTFS_REORDER_WINDOW, 2)
    if A.IPTFS_PKT_SIZE in at:
        c.pkt_size = req.attr_u32(A.IPTFS_PKT_SIZE)
        if c.pkt_size and c.pkt_size <= header_len(x):
            raise KernelError(E.EINVAL, "Packet size must be 0 or greater than IPTFS/ESP header length")
    if A.IPTFS_MAX_QSIZE in at:
        c.max_queue_size = req.attr_u32(A.IPTFS_MAX_QSIZE)
    if A.IPTFS_DROP_TIME in at:
        c.drop_time_us = req.attr_u32(A.IPTFS_DROP_TIME)
    if A.IPTFS_INIT_DELAY in at:
        c.init_delay_us = req.attr_u32(A.IPTFS_INIT_DELAY)
    x.iptfs = c


def copy_to_user(x: SecurityAssociation) -> bytes:
    """``iptfs_copy_to_user``: what an inbound / outbound IP-TFS SA reports."""
    c = x.iptfs
    assert c is not None
    if x.dir == X.XFRM_SA_DIR_IN:
        return (N.nla_u32(A.IPTFS_DROP_TIME, c.drop_time_us)
                + N.nla(A.IPTFS_REORDER_WINDOW, struct.pack("=H", c.reorder_window)))
    out = N.nla(A.IPTFS_DONT_FRAG) if c.dont_frag else b""
    return (out + N.nla_u32(A.IPTFS_INIT_DELAY, c.init_delay_us)
            + N.nla_u32(A.IPTFS_MAX_QSIZE, c.max_queue_size)
            + N.nla_u32(A.IPTFS_PKT_SIZE, c.pkt_size))
