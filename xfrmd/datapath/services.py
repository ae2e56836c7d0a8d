"""Service ops of the data path: ``xmit`` (``xfrmd ctl xmit``) sends packets of a flow from
an emulated namespace through its SPD/SAD (and, with ``deliver``, into another namespace's
input path)."""
from __future__ import annotations

import errno as E
import ipaddress

from ..services import service
from . import packet as P


def _int(req, key, default=0) -> int:
    v = req.get(key, default)
    return int(v, 0) if isinstance(v, str) else int(v)


@service("xmit")
def _xmit(kernel, ns, req: dict) -> dict:
    from ..kernel import KernelError
    from .output import xfrm_xmit
    try:
        if req.get("netns"):
            ns = kernel.netns(req["netns"])
        src, dst = str(req["src"]), str(req["dst"])
        if ipaddress.ip_address(src).version != ipaddress.ip_address(dst).version:
            return {"errno": E.EINVAL, "error": "xfrmd: SRC and DST of different families"}
        proto = req.get("proto", "udp")
        proto = P.PROTOS[proto] if proto in P.PROTOS else int(proto)
        count, size = _int(req, "count", 1), _int(req, "size", 64)
        sport, dport = _int(req, "sport", 0), _int(req, "dport", 0)
        if not (0 <= count <= 10_000_000 and 0 <= size <= 65000 and 0 <= sport < 65536
                and 0 <= dport < 65536):
            return {"errno": E.EINVAL, "error": "xfrmd: count, size or port out of range"}
        peer = kernel.netns(req["deliver"]) if req.get("deliver") else None
    except (KeyError, ValueError) as e:
        return {"errno": E.EINVAL, "error": f"xfrmd: bad xmit request: {e}"}
    except KernelError as e:
        return {"errno": e.errno, "error": str(e)}
    want_packets = bool(req.get("packets")) or peer is not None
    res = xfrm_xmit(ns, src, dst, proto, sport, dport, size, count,
                    keep_packets=want_packets, spray=bool(req.get("spray")))
    out = {"errno": 0, "netns": ns.name, **res.to_dict()}
    if peer is not None:
        from .input import deliver_packets
        out["deliver"] = deliver_packets(peer, [p for p, _ in res.packets]).to_dict()
        out["deliver"]["netns"] = peer.name
    if req.get("packets"):
        out["packets"] = [p.hex() for p, real in res.packets if real]
    kernel.run_timers()          # a hard byte/packet expiry deletes the state now
    return out


@service("xfrm_stat")
def _xfrm_stat(kernel, ns, req: dict) -> dict:
    from ..kernel import KernelError
    from .mib import xfrm_statistics_seq_show
    try:
        if req.get("netns"):
            ns = kernel.netns(req["netns"])
    except KernelError as e:
        return {"errno": e.errno, "error": str(e)}
    return {"errno": 0, "data": xfrm_statistics_seq_show(ns)}
