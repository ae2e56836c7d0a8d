"""``xfrmd ctl xmit``: packets of one flow through an emulated namespace's data path."""
from __future__ import annotations

import json
import sys

from ..ctl_util import Service, VerbTable, result, usage_error
from .pcapraw import write_raw_pcap

_USAGE = ("xmit [--netns NS] SRC DST [proto udp|tcp|icmp] [sport N] [dport N] [count N] "
          "[size BYTES] [--deliver NS [--via SLAVE]] [--pcap FILE] [--spray] [--json] — send "
          "COUNT packets of SIZE payload bytes through routing, the SPD and the SAD (ESP, "
          "offload, sequence numbers, lifetimes, EXPIRE); print per batch the policy, each SA "
          "(spi, reqid), software or offloaded on which device/slave, the sequence numbers "
          "used and the result or the drop's MIB counter. --deliver carries the ESP packets "
          "into NS's input path (a bond there receives each on the slave the link partner's "
          "layer3+4 hash picks, or on --via SLAVE; the result names the slave and the replay "
          "context that checked it); --pcap writes them (LINKTYPE_RAW); --spray: a bond sends "
          "each packet-offloaded packet through the slave its inner flow hashes to (the naive "
          "LAG replication)")
_KEYS = ("proto", "sport", "dport", "count", "size")


def parse(args: list[str]) -> tuple[dict, dict]:
    opts = {"json": False, "pcap": None}
    req: dict = {}
    pos = []
    it = iter(args)
    for a in it:
        if a in ("--netns", "--deliver", "--pcap", "--via"):
            try:
                v = next(it)
            except StopIteration:
                raise SystemExit(f"xfrmd ctl xmit: {a} needs a value") from None
            if a == "--pcap":
                opts["pcap"] = v
            else:
                req[a[2:]] = v
        elif a == "--json":
            opts["json"] = True
        elif a == "--spray":
            req["spray"] = True
        elif a in _KEYS:
            try:
                req[a] = next(it)
            except StopIteration:
                raise SystemExit(f"xfrmd ctl xmit: {a} needs a value") from None
        else:
            pos.append(a)
    if len(pos) != 2:
        raise usage_error(_USAGE)
    req["src"], req["dst"] = pos
    for k in ("sport", "dport", "count", "size"):
        if k in req:
            try:
                req[k] = int(req[k], 0)
            except ValueError:
                raise SystemExit(f"xfrmd ctl xmit: {k} must be a number") from None
    return req, opts


def _rng(r) -> str:
    return str(r[0]) if r[0] == r[1] else f"{r[0]}-{r[1]}"


def format_batch(b: dict) -> str:
    pol = b.get("policy")
    head = f"{b['count']} {'sent' if b['result'] == 'sent' else 'dropped'}"
    parts = [f"policy {pol['dir']} index {pol['index']}" if pol else "no policy"]
    for sa in b.get("sas", []):
        where = sa.get("path", "-")
        if sa.get("dev"):
            where += f" dev {sa['dev']}"
        if sa.get("slave"):
            where += f" slave {sa['slave']}"
        if sa.get("numbered_by"):
            where += f" (numbered by {sa['numbered_by']})"
        if sa.get("fallback"):
            where += f" (offload not used: {sa['fallback']})"
        seq = b.get("seq", {}).get(sa["spi"])
        parts.append(f"SA spi {sa['spi']} reqid {sa['reqid']} {sa['mode']} {sa['crypto']}: "
                     f"{where}" + (f" seq {_rng(seq)}" if seq else ""))
    if b.get("path") == "clear":
        parts.append(f"in clear via {b.get('dev')}")
    elif b.get("out_dev"):
        parts.append(f"via {b['out_dev']}")
    if b["result"] != "sent":
        parts.append(f"{b.get('reason')}: {b.get('detail', '')} (errno {b.get('errno')})"
                     if b.get("detail") and b.get("detail") != b.get("reason")
                     else f"{b.get('reason')} (errno {b.get('errno')})")
    if b.get("acquire"):
        parts.append("ACQUIRE sent for reqid " + ",".join(str(r) for r in b["acquire"]))
    return head + ": " + "; ".join(parts)


def format_in_batch(b: dict) -> str:
    head = f"{b['count']} {b['result']}"
    parts = []
    if b.get("spi"):
        parts.append(f"SA spi {b['spi']}" + (f" reqid {b['reqid']}" if "reqid" in b else ""))
    if b.get("path"):
        parts.append(b["path"] + (f" dev {b['dev']}" if b.get("dev") else ""))
    if b.get("seq"):
        parts.append(f"seq {_rng(b['seq'])}")
    if b.get("slave"):
        parts.append(f"on slave {b['slave']}"
                     + (f", replay checked by {b['context']}" if b.get("context") else ""))
    if b.get("policy"):
        parts.append(f"policy in index {b['policy']['index']}")
    if b["result"] != "delivered":
        detail = b.get("detail")         # a drop without a MIB counter: reason is the text
        parts.append(f"{b.get('reason')}" + (f": {detail}" if detail and detail != b.get("reason")
                                             else ""))
    return head + ": " + "; ".join(parts)


def _merge(total: dict | None, part: dict) -> dict:
    if total is None:
        return part
    for key in ("batches",):
        total[key].extend(part[key])
    for key in ("sent", "dropped", "delivered"):
        if key in part:
            total[key] = total.get(key, 0) + part[key]
    if "deliver" in part:
        total["deliver"] = _merge(total.get("deliver"), part["deliver"])
    total.setdefault("packets", []).extend(part.get("packets", []))
    return total


def _xmit(svc: Service, args: list[str]) -> int:
    req, opts = parse(args)
    count = req.get("count", 1)
    if opts["pcap"]:
        # the answer must fit one service record: ask for the packets in chunks
        req["packets"] = True
        chunk = max(1, 40000 // (int(req.get("size", 64)) + 120))
    else:
        chunk = count or 1
    res = None
    left = count
    while True:
        n = min(chunk, left)
        part = svc.query("xmit", **dict(req, count=n))
        if part.get("errno"):
            return result(part)
        res = _merge(res, part)
        left -= n
        if left <= 0:
            break
    if opts["pcap"]:
        write_raw_pcap(opts["pcap"], [bytes.fromhex(h) for h in res.get("packets", [])])
    res.pop("packets", None)
    if opts["json"]:
        print(json.dumps(res, indent=2))
        return 0
    for b in res["batches"]:
        print(format_batch(b))
    print(f"sent {res['sent']} dropped {res['dropped']}")
    d = res.get("deliver")
    if d is not None:
        for b in d["batches"]:
            print(f"{d['netns']}: " + format_in_batch(b))
        print(f"{d['netns']}: delivered {d['delivered']} dropped {d['dropped']}")
    sys.stdout.flush()
    return 0


_USAGE_XFRM_STAT = ("xfrm-stat [--netns NS] [--nonzero] — the namespace's /proc/net/xfrm_stat "
                    "(the data path's drop counters under the kernel's MIB names); --nonzero: "
                    "only the counters that moved")


def _xfrm_stat(svc: Service, args: list[str]) -> int:
    nonzero = "--nonzero" in args
    args = [a for a in args if a != "--nonzero"]
    req = {"path": "/proc/net/xfrm_stat"}
    if args[:1] == ["--netns"] and len(args) == 2:
        req["netns"] = args[1]
    elif args:
        raise usage_error(_USAGE_XFRM_STAT)
    res = svc.query("xfrm_stat", **req)
    if res.get("errno"):
        return result(res)
    data = res["data"]
    if nonzero:
        data = "".join(ln for ln in data.splitlines(keepends=True)
                       if ln.split()[-1:] != ["0"])
    print(data, end="")
    return 0


# ``xfrmd ctl`` verbs of this module: name -> (function, usage); :mod:`xfrmd.ctl` assembles them.
VERBS: VerbTable = {
    "xmit": (_xmit, _USAGE),
    "xfrm-stat": (_xfrm_stat, _USAGE_XFRM_STAT),
}
