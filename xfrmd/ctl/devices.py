"""``xfrmd ctl show-offload [DEV] [--json]``: what each driver holds in hardware."""
from __future__ import annotations

import json
from typing import Any

from xfrmd.ctl_util import Service, VerbTable, result, usage_error


def _show_offload(svc: Service, args: list[str]) -> int:
    as_json = "--json" in args
    rest = [a for a in args if a != "--json"]
    if len(rest) > 1:
        raise usage_error(_USAGE_SHOW_OFFLOAD)
    res = svc.query("show_offload", **({"dev": rest[0]} if rest else {}))
    if res.get("errno"):
        return result(res)
    if as_json:
        print(json.dumps(res["devices"], indent=2))
        return 0
    for name, d in res["devices"].items():
        print(f"{name}: driver {d.get('driver')}"
              + (f", esp-hw-offload {'on' if d.get('esp-hw-offload') else 'off'}")
              + (f", xfrmdev flags {d.get('flag_names')}" if d.get("flags") else ""))
        if "lag_model" in d:                    # a bond
            print(f"  lag-model {d['lag_model']}, mode {d['mode']}, xmit_hash_policy "
                  f"{d['xmit_hash_policy']}, slaves {','.join(d['slaves']) or '-'}, usable "
                  f"{','.join(d['usable_slaves']) or '-'}"
                  + (f", active {d['active_slave']}" if d.get("active_slave") else ""))
            if d.get("esp_ineligible"):
                print(f"  esp-hw-offload cannot be on: {d['esp_ineligible']}")
        for sa in d.get("sas", []):
            print("  " + _kv({k: v for k, v in sa.items() if k not in _TREE_KEYS}))
            lowers = sa.get("replicas", sa.get("lowers", []))
            for line in _lower_tree(lowers, sa.get("contexts", {})):
                print("    " + line)
    return 0


_TREE_KEYS = ("replicas", "lowers", "contexts")


def _lower_tree(lowers: list[dict[str, Any]], contexts: dict[str, Any]) -> list[str]:
    """bond → slave → hardware context: each slave with its driver, flag names and the
    handle ``xfrm_dev_state_lower_handle`` gives it, then the context its driver resolves;
    a context shared by several ports (an SOE engine slot) is printed once, under its first
    port, and named from the others."""
    out: list[str] = []
    shown: dict[str, str] = {}
    for r in lowers:
        head = (f"{r['slave']} ({r.get('driver')}, {r.get('flags', '-')}): handle "
                f"{r.get('handle', 0):#x}" + ("" if r.get("added", True) else " (deleted)"))
        cid = r.get("context")
        if cid is None:
            out.append(head + ", no hardware context")
        elif cid in shown:
            out.append(head + f" → {cid}, shared with {shown[cid]} (above)")
        else:
            shown[cid] = r["slave"]
            c = contexts.get(cid, {})
            out.append(head + f" → {cid} (per {c.get('scope', '?')}"
                       + (f", ports {','.join(c['ports'])}" if len(c.get("ports", ())) > 1 else "")
                       + ")")
            out.append("  " + _context_text(c))
    return out


def _context_text(c: dict[str, Any]) -> str:
    """A hardware context's words of its direction: the sequence counter of an outbound
    SA, the anti-replay window (right edge, bitmap) of an inbound one; the lifetime
    counters of both."""
    if "packets" not in c:
        return "no sequence, replay or lifetime counters (the stack keeps them)"
    core = c.get("numbered_by") == "core"
    if c.get("dir") == "in" and core:
        head = (f"replay window {c.get('window', 0)} checked by the core on the xfrm_state "
                f"(X06), top {c.get('top', 0)}")
    elif c.get("dir") == "in":
        head = (f"replay window {c.get('window', 0)} top {c.get('top', 0)} bitmap "
                f"{c.get('bitmap', 0):#x}")
    else:
        head = f"oseq {c.get('oseq', 0)}" + (" (the core's, X05)" if core else "")
    return (head + f", bytes {c.get('bytes', 0)}, packets {c.get('packets', 0)}"
            + (f", replay drops {c['replay_drops']}" if c.get("replay_drops") else ""))


def _kv(row: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:#x}" if k in ("spi", "handle") and isinstance(v, int)
                    else f"{k}={','.join(v) if isinstance(v, list) else v}"
                    for k, v in row.items())


def _offload_traffic(svc: Service, args: list[str]) -> int:
    as_json = "--json" in args
    args = [a for a in args if a != "--json"]
    if not 2 <= len(args) <= 4:
        raise usage_error(_USAGE_OFFLOAD_TRAFFIC)
    try:
        nums = [int(a, 0) for a in args[1:]]
    except ValueError:
        raise usage_error(_USAGE_OFFLOAD_TRAFFIC) from None
    req = {"dev": args[0], "spi": nums[0]}
    if len(nums) > 1:
        req["packets"] = nums[1]
    if len(nums) > 2:
        req["bytes"] = nums[2]
    res = svc.query("offload_traffic", **req)
    if res.get("errno"):
        return result(res)
    # what was done: a silent verb leaves its user guessing
    done = {"dev": args[0], "spi": nums[0], "packets": req.get("packets", 1),
            "bytes": req.get("bytes", 0)}
    if as_json:
        print(json.dumps(done))
        return 0
    n = done["packets"]
    print(f"{n} packet{'' if n == 1 else 's'} ({done['bytes']} bytes) through the hardware "
          f"SA spi {done['spi']:#x} on {done['dev']}")
    return 0


# what `xfrmd ctl help` shows of each verb
_USAGE_SHOW_OFFLOAD = ("show-offload [DEV] [--json] — per-device hardware SA tables "
                       "(handles, SPI, direction, port) of the offload drivers and bonds")
_USAGE_OFFLOAD_TRAFFIC = ("offload-traffic DEV SPI [PACKETS [BYTES]] [--json] — emulate "
                          "packets through the hardware SA (driver counters, netdevsim tx=)")

# ``xfrmd ctl`` verbs of this module: name -> (function, usage); :mod:`xfrmd.ctl` assembles them.
VERBS: VerbTable = {
    "show-offload": (_show_offload, _USAGE_SHOW_OFFLOAD),
    "offload-traffic": (_offload_traffic, _USAGE_OFFLOAD_TRAFFIC),
}
