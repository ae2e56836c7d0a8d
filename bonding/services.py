"""Bond files and service ops: ``/proc/net/bonding/<bond>`` and the LAG model switch,
registered by :func:`register` from bonding's init call."""
from __future__ import annotations

import errno as E
from typing import TYPE_CHECKING, Any

from xfrmd.errors import KernelError

from .lag.require import lag_require_words
from .offload import MODELS

if TYPE_CHECKING:
    from xfrmd.kernel import Kernel


def _proc(kernel: Kernel, ns: Any, path: str) -> str:
    dev = ns.links.by_name(path.rsplit("/", 1)[1])
    if dev is None or getattr(dev, "bond", None) is None:
        raise FileNotFoundError(path)
    return str(dev.bond.proc_text())


def _proc_dir(kernel: Kernel, ns: Any, path: str) -> list[tuple[str, str]]:
    return [(dev.name, "file") for dev in ns.links if getattr(dev, "bond", None) is not None]


def _lag_model(kernel: Kernel, ns: Any, request: dict[str, Any]) -> dict[str, Any]:
    dev = ns.links.by_name(request.get("bond", ""))
    if dev is None or getattr(dev, "bond", None) is None:
        raise KernelError(E.ENODEV, f"no bond {request.get('bond')!r}")
    model = request.get("model")
    if model not in MODELS:
        raise KernelError(E.EINVAL, "model must be off, replicated or shared")
    require = None
    if "require" in request:                # xfrmd's switch: checked before anything changes
        try:
            require = lag_require_words(request["require"])
        except (ValueError, TypeError, AttributeError) as e:
            raise KernelError(E.EINVAL, f"--require: {e}") from None
    if model != dev.bond.lag_model and dev.bond.ipsec_list:
        raise KernelError(E.EBUSY, f"{dev.name} has offloaded SAs; delete them first")
    if require is not None:
        dev.bond.lag_require = require
    if "notify_flush" in request:
        dev.bond.lag_flush_notify = bool(request["notify_flush"])
    if model == dev.bond.lag_model:
        return {"errno": 0}
    dev.bond.set_lag_model(model)
    return {"errno": 0}


SERVICES = {"lag_model": _lag_model}


def register(kernel: Kernel) -> None:
    """bonding's files and service ops, in the kernel's tables."""
    kernel.vfs.register("/proc/net/bonding/*", _proc)
    kernel.vfs.register_dir("/proc/net/bonding", _proc_dir)
    kernel.services.update(SERVICES)
