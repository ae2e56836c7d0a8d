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
        flags = d.get("flags", 0)
        print(f"{name}: driver {d.get('driver')}"
              + (f", esp-hw-offload {'on' if d.get('esp-hw-offload') else 'off'}")
              + (f", xfrmdev flags {flags:#x}" if flags else ""))
        if "lag_model" in d:                    # a bond
            print(f"  lag-model {d['lag_model']}, mode {d['mode']}, xmit_hash_policy "
                  f"{d['xmit_hash_policy']}, slaves {','.join(d['slaves']) or '-'}, usable "
                  f"{','.join(d['usable_slaves']) or '-'}"
                  + (f", active {d['active_slave']}" if d.get("active_slave") else ""))
            if d.get("esp_ineligible"):
                print(f"  esp-hw-offload cannot be on: {d['esp_ineligible']}")
        for sa in d.get("sas", []):
            print("  " + _kv({k: v for k, v in sa.items() if k != "replicas"}))
            for r in sa.get("replicas", []):
                print("    replica " + _kv(r))
    return 0


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
