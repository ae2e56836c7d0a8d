"""Bond files and service ops: ``/proc/net/bonding/<bond>``, the LAG model switch and
carrier changes of slaves."""
from __future__ import annotations

import errno as E

from xfrmd import vfs
from xfrmd.services import service


def _proc(kernel, ns, path: str) -> str:
    dev = ns.links.by_name(path.rsplit("/", 1)[1])
    if dev is None or getattr(dev, "bond", None) is None:
        raise FileNotFoundError(path)
    return dev.bond.proc_text()


vfs.register("/proc/net/bonding/*", _proc)
vfs.register_dir("/proc/net/bonding", lambda kernel, ns, path: [
    (dev.name, "file") for dev in ns.links if getattr(dev, "bond", None) is not None])


@service("lag_model")
def _lag_model(kernel, ns, request) -> dict:
    dev = ns.links.by_name(request.get("bond", ""))
    if dev is None or getattr(dev, "bond", None) is None:
        return {"errno": E.ENODEV, "error": f"no bond {request.get('bond')!r}"}
    model = request.get("model")
    if model not in ("off", "replicated", "shared"):
        return {"errno": E.EINVAL, "error": "model must be off, replicated or shared"}
    if "notify_flush" in request:
        dev.bond.lag_flush_notify = bool(request["notify_flush"])
    if model == dev.bond.lag_model:
        return {"errno": 0}
    if dev.bond.ipsec_list:
        return {"errno": E.EBUSY, "error": f"{dev.name} has offloaded SAs; delete them first"}
    dev.bond.set_lag_model(model)
    return {"errno": 0}
