"""``xfrmd ctl kconfig show|set``: the emulated kernel's build profile (:mod:`xfrmd.kconfig`)
read and changed at run time, and the service op behind it."""
from __future__ import annotations


from ..ctl_util import Service, VerbTable, done, result, split_json, usage_error

_USAGE = ("kconfig show [NAME…] | kconfig set NAME=y|n… [-v|--json] — the kernel's build "
          "options "
          "(IP_MROUTE, IPV6_MROUTE, XFRM_OFFLOAD, INET_ESP, DUMMY, CRYPTO_GCM, …; "
          "docs/topology.md): shown as .config lines; a change applies to requests from "
          "then on, what exists stays; set says what it set on a terminal or with -v")


def _kconfig(svc: Service, args: list[str]) -> int:
    if args[:1] == ["show"]:
        return result(svc.query("kconfig", action="show", names=args[1:]), show=True)
    args, how = split_json(args)
    if args[:1] == ["set"] and len(args) > 1 and all("=" in a for a in args[1:]):
        values = dict(a.split("=", 1) for a in args[1:])
        res = svc.query("kconfig", action="set", values=values)
        shown = {k if k.startswith("CONFIG_") else f"CONFIG_{k}": v for k, v in values.items()}
        return done(res, how, "set " + " ".join(f"{k}={v}" for k, v in shown.items()),
                    {"kconfig": shown})
    raise usage_error(_USAGE)


# ``xfrmd ctl`` verbs of this module: name -> (function, usage); :mod:`xfrmd.ctl` assembles them.
VERBS: VerbTable = {
    "kconfig": (_kconfig, _USAGE),
}
