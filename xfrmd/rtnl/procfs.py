"""The procfs files programs read about interfaces: ``/proc/net/dev`` (``dev_seq_show``,
what ``ifconfig -a`` and ``netstat -i`` list devices from) and the per-device IP sysctls
``/proc/sys/net/ipv4/conf/{all,default,DEV}/*`` (devinet.c ``devinet_sysctl``) and
``/proc/sys/net/ipv6/conf/{all,default,DEV}/*`` (addrconf.c ``addrconf_sysctl``), with a
fresh 6.18 namespace's values, and ``net.ipv4.fib_multipath_hash_policy``. A device takes ``default``'s values when it registers
(``inetdev_init`` / ``ipv6_add_dev``); writing ``all/forwarding`` sets every device's and
``default``'s (``inet_forward_change``, ``addrconf_fixup_forwarding``). The values are kept
and read back; the stack does not act on them (no forwarding, no RA, no ARP)."""
from __future__ import annotations

import errno as E
from typing import Any

from ..vfs import Lister, Reader, Writer

# devinet.c's ipv4_devconf defaults as a fresh namespace shows them for a device
IPV4_CONF = {
    "accept_local": 0, "accept_redirects": 1, "accept_source_route": 1, "arp_accept": 0,
    "arp_announce": 0, "arp_evict_nocarrier": 1, "arp_filter": 0, "arp_ignore": 0,
    "arp_notify": 0, "bc_forwarding": 0, "bootp_relay": 0, "disable_policy": 0,
    "disable_xfrm": 0, "drop_gratuitous_arp": 0, "drop_unicast_in_l2_multicast": 0,
    "force_igmp_version": 0, "forwarding": 0, "igmpv2_unsolicited_report_interval": 10000,
    "igmpv3_unsolicited_report_interval": 1000, "ignore_routes_with_linkdown": 0,
    "log_martians": 0, "mc_forwarding": 0, "medium_id": 0, "promote_secondaries": 0,
    "proxy_arp": 0, "proxy_arp_pvlan": 0, "route_localnet": 0, "rp_filter": 0,
    "secure_redirects": 1, "send_redirects": 1, "shared_media": 1, "src_valid_mark": 0,
    "tag": 0}
IPV4_SPECIAL = {"all": {"accept_source_route": 0},
                "loopback": {"disable_policy": 1, "disable_xfrm": 1}}
# addrconf.c's ipv6_devconf_dflt; "mtu" is the device's (IPV6_MIN_MTU for all/default)
IPV6_CONF = {
    "accept_dad": 1, "accept_ra": 1, "accept_ra_defrtr": 1, "accept_ra_from_local": 0,
    "accept_ra_min_hop_limit": 1, "accept_ra_min_lft": 0, "accept_ra_mtu": 1,
    "accept_ra_pinfo": 1, "accept_ra_rt_info_max_plen": 0, "accept_ra_rt_info_min_plen": 0,
    "accept_ra_rtr_pref": 1, "accept_redirects": 1, "accept_source_route": 0,
    "accept_untracked_na": 0, "addr_gen_mode": 0, "autoconf": 1, "dad_transmits": 1,
    "disable_ipv6": 0, "disable_policy": 0, "drop_unicast_in_l2_multicast": 0,
    "drop_unsolicited_na": 0, "enhanced_dad": 1, "force_forwarding": 0,
    "force_mld_version": 0, "force_tllao": 0, "forwarding": 0, "hop_limit": 64,
    "ignore_routes_with_linkdown": 0, "ioam6_enabled": 0, "ioam6_id": 65535,
    "ioam6_id_wide": 4294967295, "keep_addr_on_down": 0, "max_addresses": 16,
    "max_desync_factor": 600, "mldv1_unsolicited_report_interval": 10000,
    "mldv2_unsolicited_report_interval": 1000, "mtu": 1280, "ndisc_evict_nocarrier": 1,
    "ndisc_notify": 0, "ndisc_tclass": 0, "optimistic_dad": 0, "proxy_ndp": 0,
    "ra_defrtr_metric": 1024, "ra_honor_pio_life": 0, "ra_honor_pio_pflag": 0,
    "regen_max_retry": 3, "regen_min_advance": 2, "router_probe_interval": 60,
    "router_solicitation_delay": 1, "router_solicitation_interval": 4,
    "router_solicitation_max_interval": 3600, "router_solicitations": -1,
    "rpl_seg_enabled": 0, "seg6_enabled": 0, "stable_secret": None, "suppress_frag_ndisc": 1,
    "temp_prefered_lft": 86400, "temp_valid_lft": 604800, "use_oif_addrs_only": 0,
    "use_optimistic": 0, "use_tempaddr": 0}
IPV6_SPECIAL = {"all": {"accept_dad": 0}, "loopback": {"accept_dad": -1, "use_tempaddr": -1}}
READ_ONLY = {"ipv4": {"mc_forwarding"}, "ipv6": set()}
IPV6_MIN_MTU = 1280


def _store(ns: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """{("ipv4"|"ipv6", "all"|"default"): {name: value}} — what was written there."""
    store: dict[tuple[str, str], dict[str, Any]] = ns.__dict__.setdefault("ip_devconf", {})
    return store


def _dev_conf(dev: Any, proto: str) -> dict[str, Any]:
    confs = getattr(dev, "ip_devconf", None)       # transitional: until NetDevice declares it
    if confs is None:
        confs = dev.ip_devconf = {}
    conf: dict[str, Any] = confs.setdefault(proto, {})
    return conf


def procfs_netdev_event(event: str, dev: Any, **info: Any) -> None:
    """NETDEV_REGISTER: IPv6 starts from ``default``'s values (ipv6_add_dev copies them);
    IPv4 keeps following ``default`` for every value not set on the device itself
    (devinet_copy_dflt_conf), so only the device's own writes are kept."""
    if event == "NETDEV_REGISTER" and dev.netns is not None:
        store = _store(dev.netns)
        dev.ip_devconf = {"ipv4": {},
                          "ipv6": dict(store.get(("ipv6", "default"), {}))}


def _value(ns: Any, proto: str, who: str, name: str) -> Any:
    """``who``: "all", "default" or a device name."""
    table, special = (IPV4_CONF, IPV4_SPECIAL) if proto == "ipv4" else (IPV6_CONF, IPV6_SPECIAL)
    if who in ("all", "default"):
        written = _store(ns).get((proto, who), {})
        if name in written:
            return written[name]
        return special.get(who, {}).get(name, table[name])
    dev = ns.links.by_name(who)
    written = _dev_conf(dev, proto)
    if name in written:
        return written[name]
    if proto == "ipv6" and name == "mtu":
        return dev.mtu
    if name in special.get(dev.kind, {}):
        return special[dev.kind][name]
    if proto == "ipv4":
        return _store(ns).get((proto, "default"), {}).get(name, table[name])
    return table[name]


def _split(path: str) -> tuple[str, str, str | None]:
    """/proc/sys/net/PROTO/conf/WHO[/NAME] → (proto, who, name or None)."""
    parts = path.split("/")[1:]
    if len(parts) not in (6, 7) or parts[:3] != ["proc", "sys", "net"] or parts[4] != "conf":
        raise FileNotFoundError(path)
    return parts[3], parts[5], (parts[6] if len(parts) == 7 else None)


def _exists(ns: Any, proto: str, who: str, name: str | None) -> None:
    if who not in ("all", "default") and ns.links.by_name(who) is None:
        raise FileNotFoundError(who)
    table = IPV4_CONF if proto == "ipv4" else IPV6_CONF
    if name is not None and name not in table:
        raise FileNotFoundError(name)


def _conf_dir(kernel: Any, ns: Any, path: str) -> list[tuple[str, str]]:
    parts = path.split("/")[1:]
    if len(parts) == 5:                           # …/PROTO/conf
        return [(w, "dir") for w in ["all", "default"] + [d.name for d in ns.links]]
    proto, who, name = _split(path)
    if name is not None:
        raise FileNotFoundError(path)
    _exists(ns, proto, who, None)
    return [(n, "file") for n in (IPV4_CONF if proto == "ipv4" else IPV6_CONF)]


def _conf_read(kernel: Any, ns: Any, path: str) -> str:
    proto, who, name = _split(path)
    _exists(ns, proto, who, name)
    if name is None:
        raise FileNotFoundError(path)
    v = _value(ns, proto, who, name)
    if v is None:                                 # stable_secret not set: -EIO
        raise OSError(E.EIO, "stable_secret is not set")
    return f"{v}\n"


def _conf_write(kernel: Any, ns: Any, path: str, data: str) -> int | None:
    proto, who, name = _split(path)
    _exists(ns, proto, who, name)
    if name is None or name in READ_ONLY[proto]:
        return E.EACCES
    text = data.strip()
    value: Any
    if name == "stable_secret":
        value = text
    else:
        try:
            value = int(text, 10)                 # proc_dointvec
        except ValueError:
            return E.EINVAL
        if proto == "ipv6" and name == "mtu":     # addrconf_sysctl_mtu
            hi = ns.links.by_name(who).mtu if who not in ("all", "default") else 0xFFFF
            if value < IPV6_MIN_MTU or value > hi:
                return E.EINVAL
    if who in ("all", "default"):
        _store(ns).setdefault((proto, who), {})[name] = value
    else:
        _dev_conf(ns.links.by_name(who), proto)[name] = value
    if who == "all" and name == "forwarding":
        # inet_forward_change / addrconf_fixup_forwarding: default and every device follow
        _store(ns).setdefault((proto, "default"), {})[name] = value
        for dev in ns.links:
            _dev_conf(dev, proto)[name] = value
        if proto == "ipv4":
            _store(ns).setdefault((proto, "all"), {})["accept_redirects"] = int(not value)
    return None


# what netconf.py reads and wraps (inet_netconf_fill_devconf reads the devconf; the
# forwarding, rp_filter, proxy_arp/proxy_ndp and ignore_routes_with_linkdown handlers notify)
devconf_value, conf_read, conf_write = _value, _conf_read, _conf_write


# -- /proc/sys/net/ipv4/fib_multipath_hash_policy ------------------------------------------

def multipath_hash_policy(ns: Any) -> int:
    """``net.ipv4.fib_multipath_hash_policy`` of the namespace (0: layer 3)."""
    v: int = ns.__dict__.get("ipv4_sysctl", {}).get("fib_multipath_hash_policy", 0)
    return v


def _hash_policy_read(kernel: Any, ns: Any, path: str) -> str:
    return f"{multipath_hash_policy(ns)}\n"


def _hash_policy_write(kernel: Any, ns: Any, path: str, data: str) -> int | None:
    """``proc_fib_multipath_hash_policy``: an unsigned integer from 0 to 3."""
    try:
        value = int(data.strip(), 10)
    except ValueError:
        return E.EINVAL
    if not 0 <= value <= 3:
        return E.EINVAL
    ns.__dict__.setdefault("ipv4_sysctl", {})["fib_multipath_hash_policy"] = value
    return None


# -- /proc/net/dev -----------------------------------------------------------------------

_DEV_HEADER = ("Inter-|   Receive                                                |  Transmit\n"
               " face |bytes    packets errs drop fifo frame compressed multicast|"
               "bytes    packets errs drop fifo colls carrier compressed\n")


def _stats(dev: Any) -> tuple[int, ...]:
    """rtnl_link_stats64 as IFLA_STATS64 reports it (devices/netstats.py counts the packets
    of programs' sockets crossing the device)."""
    s = getattr(dev, "stats64", None)
    return tuple(s) if s is not None else (0,) * 24


def _proc_net_dev(kernel: Any, ns: Any, path: str) -> str:
    """``dev_seq_show`` / ``dev_seq_printf_stats``: one line per device, in index order."""
    lines = [_DEV_HEADER]
    for dev in ns.links:
        (rx_p, tx_p, rx_b, tx_b, rx_e, tx_e, rx_d, tx_d, mc, coll, rx_len, rx_over, rx_crc,
         rx_frame, rx_fifo, rx_missed, tx_abort, tx_carrier, tx_fifo, tx_hb, tx_window,
         rx_comp, tx_comp, *_rest) = _stats(dev)
        lines.append(
            f"{dev.name:>6}: {rx_b:7d} {rx_p:7d} {rx_e:4d} {rx_d + rx_missed:4d} {rx_fifo:4d} "
            f"{rx_len + rx_over + rx_crc + rx_frame:5d} {rx_comp:10d} {mc:9d} {tx_b:8d} "
            f"{tx_p:7d} {tx_e:4d} {tx_d:4d} {tx_fifo:4d} {coll:5d} "
            f"{tx_carrier + tx_abort + tx_window + tx_hb:7d} {tx_comp:10d}\n")
    return "".join(lines)


# the files (pattern, read, write) and directories (pattern, lister) registered by
# xfrmd/rtnl/__init__.py ``init``, in this order: the first match wins
VFS_FILES: tuple[tuple[str, Reader | None, Writer | None], ...] = (
    ("/proc/sys/net/ipv4/conf/*/mc_forwarding", _conf_read, None),      # 0444
    ("/proc/sys/net/ipv4/conf/*/*", _conf_read, _conf_write),
    ("/proc/sys/net/ipv6/conf/*/*", _conf_read, _conf_write),
    ("/proc/sys/net/ipv4/fib_multipath_hash_policy", _hash_policy_read, _hash_policy_write),
    ("/proc/net/dev", _proc_net_dev, None),
    ("/proc/self/net/dev", _proc_net_dev, None),
)
VFS_DIRS: tuple[tuple[str, Lister], ...] = (
    ("/proc/sys/net/ipv4/conf", _conf_dir),
    ("/proc/sys/net/ipv4/conf/*", _conf_dir),
    ("/proc/sys/net/ipv6/conf", _conf_dir),
    ("/proc/sys/net/ipv6/conf/*", _conf_dir),
)
