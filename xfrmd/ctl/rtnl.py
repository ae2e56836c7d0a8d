"""``xfrmd ctl`` verbs for links."""
from __future__ import annotations

from ..ctl_util import Service, VerbTable, done, result, split_json, usage_error


def _link(svc: Service, args: list[str]) -> int:
    args, how = split_json(args)
    if len(args) == 2 and args[1] == "unplug":
        return done(svc.query("link_unplug", dev=args[0]), how,
                    f"{args[0]} unplugged (gone from its namespace until `link {args[0]} replug`)",
                    {"dev": args[0], "action": "unplug"})
    if len(args) == 2 and args[1] == "replug":
        res = svc.query("link_replug", dev=args[0])
        return done(res, how, f"{args[0]} probed again as ifindex {res.get('ifindex')}",
                    {"dev": args[0], "action": "replug", "ifindex": res.get("ifindex")})
    if len(args) in (3, 5) and args[1] == "netns" and (len(args) == 3 or args[3] == "name"):
        req = {"dev": args[0], "target": args[2]}
        if len(args) == 5:
            req["name"] = args[4]
        return result(svc.query("link_netns", **req))
    if len(args) != 3 or args[1] != "carrier" or args[2] not in ("on", "off"):
        raise usage_error(_USAGE_LINK)
    return done(svc.query("link_carrier", dev=args[0], on=args[2] == "on"), how,
                f"{args[0]}: carrier {args[2]}", {"dev": args[0], "carrier": args[2]})


def _links(svc: Service, args: list[str]) -> int:
    return result(svc.query("links"), show=True)


# what `xfrmd ctl help` shows of each verb
_USAGE_LINK = ("link DEV carrier on|off | unplug | replug | netns NS [name NEWNAME] [-v|--json] "
               "— a cable plugged or pulled (failover on bonds); the port hot-unplugged or probed "
               "again; the device moved to another namespace (ip link set DEV netns); carrier, "
               "unplug and replug say what they did on a terminal or with -v")
_USAGE_LINKS = "links — the device table of the namespace"

# ``xfrmd ctl`` verbs of this module: name -> (function, usage); :mod:`xfrmd.ctl` assembles them.
VERBS: VerbTable = {
    "link": (_link, _USAGE_LINK),
    "links": (_links, _USAGE_LINKS),
}
