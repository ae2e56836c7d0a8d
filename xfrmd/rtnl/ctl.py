"""``xfrmd ctl`` verbs for links."""
from __future__ import annotations

from ..ctl import VERBS, _result, verb


@verb("link", "link DEV carrier on|off | unplug | replug | netns NS [name NEWNAME] — a cable "
              "plugged or pulled (failover on bonds); the port hot-unplugged or probed again; "
              "the device moved to another namespace (ip link set DEV netns)")
def _link(svc, args) -> int:
    if len(args) == 2 and args[1] in ("unplug", "replug"):
        return _result(svc.query("link_" + args[1], dev=args[0]))
    if len(args) in (3, 5) and args[1] == "netns" and (len(args) == 3 or args[3] == "name"):
        req = {"dev": args[0], "target": args[2]}
        if len(args) == 5:
            req["name"] = args[4]
        return _result(svc.query("link_netns", **req))
    if len(args) != 3 or args[1] != "carrier" or args[2] not in ("on", "off"):
        raise SystemExit("usage: xfrmd ctl " + VERBS["link"][1])
    return _result(svc.query("link_carrier", dev=args[0], on=args[2] == "on"))


@verb("links", "links — the device table of the namespace")
def _links(svc, args) -> int:
    return _result(svc.query("links"), show=True)
