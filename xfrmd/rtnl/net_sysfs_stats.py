"""/sys/class/net/DEV/statistics (net/core/net-sysfs.c ``netstat_show``): one 0444 file per
counter of ``struct rtnl_link_stats64`` as ``dev_get_stats`` fills it — the same counters
IFLA_STATS64 and /proc/net/dev report (devices/netstats.py counts them) — printed ``%lu``.
rx_otherhost_dropped, the last field, has no file."""
from __future__ import annotations

from typing import Any

# the fields of rtnl_link_stats64 in their order (include/uapi/linux/if_link.h)
FIELDS = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_errors", "tx_errors",
          "rx_dropped", "tx_dropped", "multicast", "collisions", "rx_length_errors",
          "rx_over_errors", "rx_crc_errors", "rx_frame_errors", "rx_fifo_errors",
          "rx_missed_errors", "tx_aborted_errors", "tx_carrier_errors", "tx_fifo_errors",
          "tx_heartbeat_errors", "tx_window_errors", "rx_compressed", "tx_compressed",
          "rx_nohandler")


def netstat_show(kernel: Any, ns: Any, path: str) -> str:
    parts = path.split("/")          # /sys/class/net/DEV/statistics/FIELD
    dev = ns.links.by_name(parts[4]) if len(parts) == 7 else None
    if dev is None or parts[6] not in FIELDS:
        raise FileNotFoundError(path)
    stats = tuple(getattr(dev, "stats64", None) or ())
    i = FIELDS.index(parts[6])
    return f"{stats[i] if i < len(stats) else 0}\n"


def statistics_dir(kernel: Any, ns: Any, path: str) -> list[tuple[str, str]]:
    """/sys/class/net/DEV/statistics (netstat_group)."""
    parts = path.split("/")
    if len(parts) != 6 or parts[5] != "statistics" or ns.links.by_name(parts[4]) is None:
        raise FileNotFoundError(path)
    return [(f, "file") for f in FIELDS]


VFS_FILES = (("/sys/class/net/*/statistics/*", netstat_show, None),)
VFS_DIRS = (("/sys/class/net/*/statistics", statistics_dir),)
