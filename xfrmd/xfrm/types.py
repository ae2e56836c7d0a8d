"""``__xfrm_init_state`` (xfrm_state.c) and the ``init_state`` of the xfrm types:
``esp_init_state`` (esp4.c/esp6.c), ``ah_init_state`` (ah4.c/ah6.c), ``ipcomp4/6_init_state``
(xfrm_ipcomp.c). Each raises :class:`~xfrmd.errors.KernelError` (errno and extack) on failure.

Which types exist is the kernel's profile (:mod:`xfrmd.kconfig`: CONFIG_INET_ESP,
CONFIG_INET6_ESP, CONFIG_INET_AH, …; all on by default). A kernel without one — like a
machine whose kernel lacks the modules — answers EPROTONOSUPPORT "Requested type not found".
``DISABLED_TYPES`` removes a type from every kernel of the process (tests).
"""
from __future__ import annotations

import errno as E
from typing import TYPE_CHECKING, Callable

from netlink_codec import xfrm as X

from .. import kconfig
from ..errors import KernelError
from . import algos
from .state import XFRM_STATE_VALID, SecurityAssociation, StateId

if TYPE_CHECKING:
    from ..kernel import Kernel

CRYPTO_MAX_ALG_NAME = 128
CRYPTO_FAIL = "Kernel was unable to initialize cryptographic operations"

# Types missing from every kernel of this process (tests); a kernel's own switch is its
# profile (topology ``[kernel]``, ``xfrmd ctl kconfig set INET_ESP=n``, ``xfrm-type esp off``).
DISABLED_TYPES: set[int] = set()

_TUNNEL_FLAG_MODES = frozenset((X.XFRM_MODE_TUNNEL, X.XFRM_MODE_BEET, X.XFRM_MODE_IPTFS))
# xfrm_get_mode: transport, tunnel, BEET and IP-TFS for both families; route optimisation
# (and in-trigger) only for IPv6 with MIPv6
_MODES = frozenset((X.XFRM_MODE_TRANSPORT, X.XFRM_MODE_TUNNEL, X.XFRM_MODE_BEET,
                    X.XFRM_MODE_IPTFS))
_MODES_V6 = _MODES | {X.XFRM_MODE_ROUTEOPTIMIZATION}


_MODE_OK = frozenset([(m, X.AF_INET) for m in _MODES] + [(m, X.AF_INET6) for m in _MODES_V6])


def get_mode(mode: int, family: int) -> bool:
    """``xfrm_get_mode``: is there a mode ``mode`` for ``family``?"""
    return (mode, family) in _MODE_OK


def get_type(proto: int, family: int,
             kernel: Kernel | None = None) -> Callable[[SecurityAssociation], None] | None:
    """``xfrm_get_type``: the init_state function, or None when no module provides it (for
    this family: esp4 and esp6 are separate modules). Mobile IPv6 (ROUTING/DSTOPTS) is not
    built into the emulated kernel."""
    if proto in DISABLED_TYPES:
        return None
    opts = kconfig.XFRM_TYPES.get(proto)       # kconfig.xfrm_type_built, inline
    if opts is not None and kernel is not None:
        cfg = getattr(kernel, "kconfig", None)
        if cfg is not None and not cfg.values[opts[1] if family == X.AF_INET6 else opts[0]]:
            return None
    return _TYPES.get(proto)


def set_type_enabled(kernel: Kernel, proto: int, enabled: bool) -> None:
    """Load or unload an xfrm type module in one emulated kernel, both families (the
    profile's options for it, e.g. CONFIG_INET_ESP and CONFIG_INET6_ESP)."""
    cfg = kconfig.of(kernel)
    for name in set(kconfig.XFRM_TYPES[proto]):
        cfg.set(name, enabled)


def init_state(x: SecurityAssociation, *, ip_no_pmtu_disc: bool = False) -> None:
    """``__xfrm_init_state``."""
    family, mode = x.family, x.mode
    if family == X.AF_INET and ip_no_pmtu_disc:
        x.flags |= X.XFRM_STATE_NOPMTUDISC
    sel_family = x.sel[40] | x.sel[41] << 8     # state.sel_family
    # get_mode(mode, family) is (mode, family) in _MODE_OK
    if sel_family != 0:
        if (mode, sel_family) not in _MODE_OK:
            raise KernelError(E.EPROTONOSUPPORT, "Requested mode not found")
        if mode not in _TUNNEL_FLAG_MODES and family != sel_family:
            raise KernelError(E.EPROTONOSUPPORT, "Only tunnel modes can accommodate a change of family")
    elif (mode, family) not in _MODE_OK:
        raise KernelError(E.EPROTONOSUPPORT, "Requested mode not found")
    type_init = get_type(x.id.proto, family, x.net.kernel if x.net is not None else None)
    if type_init is None:
        raise KernelError(E.EPROTONOSUPPORT, "Requested type not found")
    type_init(x)
    if (x.mode, family) not in _MODE_OK:
        raise KernelError(E.EPROTONOSUPPORT, "Requested mode not found")
    if x.nat_keepalive_interval:
        if x.dir != X.XFRM_SA_DIR_OUT:
            raise KernelError(E.EINVAL, "NAT keepalive is only supported for outbound SAs")
        if x.encap is None or x.encap.encap_type != X.UDP_ENCAP_ESPINUDP:
            raise KernelError(E.EINVAL, "NAT keepalive is only supported for UDP encapsulation")


def _key_ok(desc: algos.AlgoDesc, key: bytes) -> bool:
    return desc.keys is None or len(key) in desc.keys


def esp_init_state(x: SecurityAssociation) -> None:
    """``esp_init_state``: build the AEAD (``esp_init_aead``) or authenc transform
    (``esp_init_authenc``), then check the encapsulation."""
    if x.aead is not None:
        aead_name, _, key, _, icv_len = x.aead
        # crypto_alloc_aead: aead_get_byname without a kernel (the table entry unless the
        # whole process lacks it), one call less
        desc = algos.AEAD_BY_NAME_ICV.get((aead_name, icv_len))
        if desc is not None and aead_name in algos.UNAVAILABLE:
            desc = None
        name = f"{x.geniv}({aead_name})"
        if len(name) >= CRYPTO_MAX_ALG_NAME:
            raise KernelError(E.ENAMETOOLONG, "Algorithm name is too long")
        # crypto_aead_setkey, then setauthsize(icv_len / 8)
        if desc is None or (desc.keys is not None and len(key) not in desc.keys):
            raise KernelError(E.EINVAL, CRYPTO_FAIL)
    elif x.enc is not None:
        enc = algos.ealg_get_byname(x.enc.name)
        auth_name = x.auth.name if x.auth is not None else "digest_null"
        esn = "authencesn" if x.flags & X.XFRM_STATE_ESN else "authenc"
        name = f"{x.geniv}({esn}({auth_name},{x.enc.name}))" if x.geniv else \
            f"{esn}({auth_name},{x.enc.name})"
        if len(name) >= CRYPTO_MAX_ALG_NAME:
            raise KernelError(E.ENAMETOOLONG, "Algorithm name is too long")
        if x.auth is not None:
            auth = algos.aalg_get_byname(x.auth.name)
            # setauthsize(trunc_len / 8) must not exceed the digest size
            if auth is None or x.auth.trunc_len // 8 > auth.icv_fullbits // 8:
                raise KernelError(E.EINVAL, CRYPTO_FAIL)
            if not _key_ok(auth, x.auth.key):
                raise KernelError(E.EINVAL, CRYPTO_FAIL)
        # crypto_aead_setkey: the cipher checks its own key length
        if enc is None or not _key_ok(enc, x.enc.key):
            raise KernelError(E.EINVAL, CRYPTO_FAIL)
    else:
        raise KernelError(E.EINVAL, "ESP: AEAD or CRYPT must be provided")
    if x.encap is not None and x.encap.encap_type not in (X.UDP_ENCAP_ESPINUDP,
                                                           X.TCP_ENCAP_ESPINTCP):
        raise KernelError(E.EINVAL, "Unsupported encapsulation type for ESP")


def ah_init_state(x: SecurityAssociation) -> None:
    """``ah_init_state``."""
    if x.auth is None:
        raise KernelError(E.EINVAL, "AH requires a state with an AUTH algorithm")
    if x.encap is not None:
        raise KernelError(E.EINVAL, "AH is not compatible with encapsulation")
    desc = algos.aalg_get_byname(x.auth.name)
    if desc is None or not _key_ok(desc, x.auth.key):
        raise KernelError(E.EINVAL, CRYPTO_FAIL)


def ipcomp_init_state(x: SecurityAssociation) -> None:
    """``ipcomp4_init_state`` / ``ipcomp6_init_state`` + ``ipcomp_init_state``."""
    if x.mode not in (X.XFRM_MODE_TRANSPORT, X.XFRM_MODE_TUNNEL):
        raise KernelError(E.EINVAL, "Unsupported XFRM mode for IPcomp")
    if x.comp is None:
        raise KernelError(E.EINVAL, "Missing required compression algorithm")
    if x.encap is not None:
        raise KernelError(E.EINVAL, "IPComp is not compatible with encapsulation")
    if x.mode == X.XFRM_MODE_TUNNEL:
        ipcomp_tunnel_attach(x)


def ipcomp_tunnel_attach(x: SecurityAssociation) -> None:
    """``ipcomp_tunnel_attach`` (ipcomp.c / ipcomp6.c): share or create the hidden tunnel
    state — IPIP with spi = outer saddr for IPv4, IPv6-in-IPv6 with an xfrm6_tunnel SPI."""
    db = x.net
    assert db is not None       # allocated by a StateDb
    family = x.family
    mark = x.mark[0] & x.mark[1]
    if family == X.AF_INET:
        proto, spi = IPPROTO_IPIP, int.from_bytes(x.saddr[:4], "big")
    else:
        proto, spi = IPPROTO_IPV6, db.tunnel6_spi_lookup(x.saddr)
    t = db.lookup(mark, x.id.daddr, spi, proto, family) if spi else None
    if t is None:
        # ipcomp_tunnel_create
        if family == X.AF_INET6:
            spi = db.tunnel6_alloc_spi(x.saddr)
        t = db.alloc()
        t.id = StateId(x.id.daddr, spi, proto)
        t.sel = x.sel
        t.family, t.mode, t.saddr = family, x.mode, x.saddr
        t.flags = x.flags
        if x.extra_flags:       # (a class default until set)
            t.extra_flags = x.extra_flags
        t.mark, t.if_id = x.mark, x.if_id
        try:
            init_state(t)
        except KernelError as e:
            if family == X.AF_INET6:
                db.tunnel6_free_spi(x.saddr)
            raise KernelError(E.EINVAL, "Kernel error: failed to initialize the associated state") from e
        t.km_state = XFRM_STATE_VALID
        t.tunnel_users = 1
        db.insert(t)
    x.tunnel = t
    t.tunnel_users += 1


def tunnel_init_state(x: SecurityAssociation) -> None:
    """``ipip_init_state`` (xfrm4_tunnel.c) / ``xfrm6_tunnel_init_state``."""
    if x.mode != X.XFRM_MODE_TUNNEL or x.encap is not None:
        raise KernelError(E.EINVAL)


IPPROTO_IPIP, IPPROTO_IPV6 = 4, 41
_TYPES: dict[int, Callable[[SecurityAssociation], None]] = {
    X.IPPROTO_ESP: esp_init_state, X.IPPROTO_AH: ah_init_state,
    X.IPPROTO_COMP: ipcomp_init_state, IPPROTO_IPIP: tunnel_init_state,
    IPPROTO_IPV6: tunnel_init_state}
