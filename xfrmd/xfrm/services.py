"""Service ops of the XFRM subsystem (``xfrmd ctl`` and tests): ``acquire`` triggers what an
outbound packet hitting a policy without SA would (``xfrm_tmpl_resolve_one``, see
:meth:`xfrmd.xfrm.spdb.PolicyDb.tmpl_resolve`). :data:`SERVICES` is registered by the
subsystem's init call (xfrmd/xfrm/__init__.py)."""
from __future__ import annotations

import errno as E
import ipaddress
import socket
import struct
from typing import TYPE_CHECKING, Any, Callable

from netlink_codec import xfrm as X

from .algos import canonical, set_available
from .netns import xfrm_net
from .policy import Policy, PolicyWire, Template, host_selector
from .types import set_type_enabled

if TYPE_CHECKING:
    from ..kernel import Kernel, NetNamespace

ServiceFn = Callable[["Kernel", "NetNamespace", dict[str, Any]], dict[str, Any]]

XFRM_PROTOS = {"esp": X.IPPROTO_ESP, "ah": X.IPPROTO_AH, "comp": X.IPPROTO_COMP}
MODES = {"transport": X.XFRM_MODE_TRANSPORT, "tunnel": X.XFRM_MODE_TUNNEL,
         "beet": X.XFRM_MODE_BEET}
INF = X.XFRM_INF


def _addr(text: str) -> tuple[bytes, int]:
    a = ipaddress.ip_address(text)
    return a.packed.ljust(16, b"\0"), (X.AF_INET if a.version == 4 else X.AF_INET6)


def _l4(value: object) -> int:
    if value in (None, "", "any"):
        return 0
    if isinstance(value, int) or str(value).isdigit():
        return int(str(value))
    return socket.getprotobyname(str(value))


def _policy_by_index(ns: NetNamespace, index: int) -> Policy | None:
    for pol in xfrm_net(ns).spd.all.values():
        if pol.index == index:
            return pol
    return None


def _hand_policy(req: dict[str, Any], src: bytes, dst: bytes, family: int, proto: int,
                 sport: int, dport: int) -> PolicyWire:
    """A one-template outbound policy described on the command line."""
    sel = host_selector(src, dst, family, proto, sport, dport)
    info = bytes(sel) + struct.pack("=8Q4QIIBBBB4x", INF, INF, INF, INF, 0, 0, 0, 0,
                                    0, 0, 0, 0, int(req.get("priority", 0)), 0,
                                    X.XFRM_POLICY_OUT, X.XFRM_POLICY_ALLOW, 0, 0)
    mode = MODES[req.get("mode", "tunnel")]
    t_src, t_dst = src, dst
    if req.get("tmpl_src"):
        t_src = _addr(req["tmpl_src"])[0]
    if req.get("tmpl_dst"):
        t_dst = _addr(req["tmpl_dst"])[0]
    t = Template(t_dst, 0, XFRM_PROTOS[req.get("xfrm", "esp")], family, t_src,
                 int(req.get("reqid", 0)), mode)
    mark = (int(req.get("mark", 0)), int(req.get("mask", 0xFFFFFFFF if req.get("mark") else 0)))
    return PolicyWire(info, [t], mark=mark, if_id=int(req.get("if_id", 0)))


def _acquire(kernel: Kernel, ns: NetNamespace, req: dict[str, Any]) -> dict[str, Any]:
    spd = xfrm_net(ns).spd
    pol: Policy | PolicyWire | None
    try:
        src, family = _addr(req["src"])
        dst, family2 = _addr(req["dst"])
        if family != family2:
            return {"errno": E.EINVAL, "error": "xfrmd: src and dst of different families"}
        proto = _l4(req.get("proto"))
        sport, dport = int(req.get("sport", 0)), int(req.get("dport", 0))
        if req.get("policy") is not None:
            pol = _policy_by_index(ns, int(req["policy"]))
            if pol is None:
                return {"errno": E.ENOENT, "error": f"xfrmd: no policy with index {req['policy']}"}
        elif req.get("xfrm") or req.get("reqid") is not None:
            pol = _hand_policy(req, src, dst, family, proto, sport, dport)
        else:
            found = spd.lookup_flow(src, dst, family, proto, sport, dport)
            if found is None:
                return {"errno": 0, "policy": None, "acquired": [], "resolved": []}
            if found.action == X.XFRM_POLICY_BLOCK:
                return {"errno": E.EPERM, "error": f"xfrmd: policy {found.index} blocks the flow"}
            pol = found
    except (KeyError, ValueError, OSError) as e:
        return {"errno": E.EINVAL, "error": f"xfrmd: bad acquire request: {e}"}
    res: dict[str, Any] = spd.tmpl_resolve(pol, src, dst, family, proto, sport, dport)
    if res["errno"] == E.ESRCH:
        res["error"] = "no key manager listens on XFRMNLGRP_ACQUIRE"
    elif res["errno"] == E.EAGAIN:
        res["errno"] = 0   # an acquire is in progress: what the caller asked for
    return res


def _xfrm_type(kernel: Kernel, ns: NetNamespace, req: dict[str, Any]) -> dict[str, Any]:
    """Load (``on``) or unload (``off``) the ESP / AH / IPComp type of this kernel: without it
    NEWSA answers EPROTONOSUPPORT "Requested type not found", as a kernel without the module."""
    proto = XFRM_PROTOS.get(str(req.get("proto")))
    state = req.get("state")
    if proto is None or state not in ("on", "off"):
        return {"errno": E.EINVAL, "error": "xfrmd: xfrm-type esp|ah|comp on|off"}
    set_type_enabled(kernel, proto, state == "on")
    return {"errno": 0}


def _crypto_alg(kernel: Kernel, ns: NetNamespace, req: dict[str, Any]) -> dict[str, Any]:
    """Make crypto algorithms (table names or aliases) available (``on``) or not (``off``)
    in this kernel: a missing one answers ENOSYS "Requested … algorithm not found"."""
    names = req.get("names") or []
    state = req.get("state")
    canon = [canonical(str(n)) for n in names]
    if state not in ("on", "off") or not names or None in canon:
        bad = [n for n, c in zip(names, canon) if c is None]
        return {"errno": E.EINVAL, "error": f"xfrmd: crypto-alg on|off NAME… (unknown: {bad})"}
    set_available(kernel, [c for c in canon if c is not None], state == "on")
    return {"errno": 0}


SERVICES: dict[str, ServiceFn] = {
    "acquire": _acquire,
    "xfrm_type": _xfrm_type,
    "crypto_alg": _crypto_alg,
}
