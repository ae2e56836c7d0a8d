"""The bond device (drivers/net/bonding): modes, slaves, active slave selection and failover,
802.3ad aggregator membership from carrier (no LACPDUs), and ``/proc/net/bonding/<bond>``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devices.features import ESP_FEATURES, NetdevFeatures
from devices.netdev import NetDevice, call_netdevice_notifiers

from .bond_features import bond_update_features, bond_set_xfrm_features
from .offload import (LAG_MODELS, BondXfrmDevOps, bond_ipsec_add_sa_all, bond_ipsec_config_change,
                      bond_ipsec_del_sa_all, bond_ipsec_slave_features_changed,
                      bond_ipsec_topology_begin, bond_ipsec_topology_end, bond_lag_offload,
                      bond_mode_can_use_lag_xfrm)
from .lag.require import lag_require_words

MODES = ["balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb",
         "balance-alb"]
AD_SELECT = ["stable", "bandwidth", "count"]


class Bond:
    """Attached to a bond NetDevice as ``dev.bond``."""

    def __init__(self, dev: NetDevice, mode: str = "balance-rr",
                 xmit_hash_policy: str = "layer2", miimon: int = 0, lag_model: str = "off"):
        if mode not in MODES:
            raise ValueError(f"bond mode {mode!r} is not one of {', '.join(MODES)}")
        if lag_model not in LAG_MODELS:
            raise ValueError(f"lag_model {lag_model!r} is not one of {', '.join(LAG_MODELS)}")
        self.dev = dev
        self.mode = mode
        self.xmit_hash_policy = xmit_hash_policy
        self.miimon = miimon
        self.lag_model = lag_model
        self.slaves: list[NetDevice] = []
        self.active: NetDevice | None = None
        self.primary: NetDevice | None = None       # the primary option's slave
        self.params: BondParams | None = None      # bond_params, made by params()
        # bond->ipsec_list: bonding.offload.BondIpsec entries (``.x`` is the xfrm_state)
        self.ipsec_list: list[Any] = []
        self.ipsec_lag_block_count = 0  # LAG adds refused with EAGAIN while > 0
        self.lag_flush_notify = False   # xfrmd switch: DELSA for states a LAG flush deletes
        # xfrmd switch (bonding/lag/require.py): the review's LAG guarantees a state's slaves
        # must declare, in LAG_GUARANTEES order; () = off
        self.lag_require: tuple[str, ...] = ()
        self.in_feat_change = False     # bond->notifier_ctx: a slave's FEAT_CHANGE is handled
        # slaves enslaved without carrier while neither miimon nor arp_interval ran: their
        # slave->link is BOND_LINK_UP all the same (bond_enslave's initial state); they
        # follow their carrier again once it comes on
        self.link_up_without_carrier: set[NetDevice] = set()

    def lag_eligible(self) -> bool:
        """``bond_mode_can_use_lag_xfrm``: 802.3ad or balance-xor hashing layer3+4."""
        return bond_mode_can_use_lag_xfrm(self)

    # -- slaves ----------------------------------------------------------------------------
    def enslave(self, slave: NetDevice) -> None:
        if slave in self.slaves:
            return
        bond_ipsec_topology_begin(self, "enslave", slave)
        slave.master = self.dev
        self.slaves.append(slave)
        if not slave.carrier and not self.miimon and not params(self).arp_interval:
            # bond_enslave, "check for initial state": with no link monitor the new slave's
            # link is taken as BOND_LINK_UP whatever its carrier, so it can become active
            self.link_up_without_carrier.add(slave)
        if self.active is None and self._usable(slave):
            self.change_active(slave)
        bond_update_features(self)
        bond_ipsec_topology_end(self, "enslave", slave)

    def release(self, slave: NetDevice) -> None:
        """``__bond_release_one``: the newest LAG series flushes before detaching; the RFC
        updates the slave array first, then drops the departing slave's replicas."""
        if slave not in self.slaves:
            return
        bond_ipsec_topology_begin(self, "release", slave)
        was_active = slave is self.active
        self.slaves.remove(slave)
        self.link_up_without_carrier.discard(slave)
        if was_active:
            self.change_active(self._select())
        bond_ipsec_topology_end(self, "release", slave)
        slave.master = None
        bond_update_features(self)

    # -- options (called by the netlink/sysfs option code) ---------------------------------------
    def set_xmit_hash_policy(self, policy: str) -> None:
        """``bond_option_xmit_hash_policy_set`` with the LAG series' XFRM handling: the
        newest series flushes the bond's states when the old or the new setting is
        LAG-eligible, the RFC when leaving LAG; then the bond's ESP features follow."""
        old, new = self._config_change("xmit_hash_policy", policy)
        if bond_lag_offload(self):
            bond_set_xfrm_features(self, entering_lag=new and not old)

    def set_mode(self, mode: str) -> None:
        """``bond_option_mode_set`` (the caller checks the bond is down without slaves):
        XFRM flush as for the hash policy, then ``bond_set_xfrm_features``."""
        if mode not in MODES:
            raise ValueError(f"bond mode {mode!r} is not one of {', '.join(MODES)}")
        old, new = self._config_change("mode", mode)
        bond_set_xfrm_features(self, entering_lag=new and not old)

    def _config_change(self, option: str, value: str) -> tuple[bool, bool]:
        """Set ``option`` (mode or xmit_hash_policy) to ``value``; the LAG models flush
        their XFRM states for the change first (``bond_ipsec_config_change`` with whether
        the bond was and will be LAG-eligible). Returns (was, will be) eligible."""
        old = self.lag_eligible()
        saved = getattr(self, option)
        setattr(self, option, value)
        new = self.lag_eligible()
        setattr(self, option, saved)
        bond_ipsec_config_change(self, old, new)
        setattr(self, option, value)
        return old, new

    def set_lag_model(self, model: str) -> None:
        """``xfrmd ctl lag-model`` / the topology: choose how the bond offloads IPsec; the
        ESP wanted bits become what a bond created under that model has."""
        self.lag_model = model
        bond_set_xfrm_features(self, entering_lag=self.lag_eligible())

    def _usable(self, slave: NetDevice) -> bool:
        """``slave->link == BOND_LINK_UP`` of a running slave."""
        return slave.up and (slave.carrier or slave in self.link_up_without_carrier)

    def usable_slaves(self) -> list[NetDevice]:
        """Slaves that carry traffic: in 802.3ad those with carrier are in the aggregator."""
        return [s for s in self.slaves if self._usable(s)]

    def _select(self) -> NetDevice | None:
        """``bond_find_best_slave``: the first usable slave of the highest prio."""
        return self.best_slave()

    def best_slave(self) -> NetDevice | None:
        """``bond_choose_primary_or_current``'s scan: among usable slaves in enslave order
        the first of the highest ``slave->prio`` (set by IFLA_BOND_SLAVE_PRIO)."""
        usable = self.usable_slaves()
        return max(usable, key=lambda s: s.bond_prio) if usable else None

    def carrier_changed(self, slave: NetDevice, event: str = "NETDEV_CHANGE") -> None:
        """A slave's link went up or down (miimon / NETDEV_CHANGE, NETDEV_UP, NETDEV_DOWN).
        LAG offload models react around the change (bonding.offload)."""
        if slave not in self.slaves:
            return
        if slave.carrier:
            self.link_up_without_carrier.discard(slave)
        bond_ipsec_topology_begin(self, event, slave)
        if slave is self.active and not self._usable(slave):
            self.change_active(self._select())
        elif self.active is None and self._usable(slave):
            self.change_active(slave)
        bond_ipsec_topology_end(self, event, slave)

    def change_active(self, new: NetDevice | None) -> None:
        """``bond_change_active_slave``: offloaded SAs leave the old active slave before the
        switch and are added on the new one after it (active-backup); the failover is
        announced on the netdevice chain (NETDEV_BONDING_FAILOVER: rtnetlink_event sends the
        bond's RTM_NEWLINK). The SAs moving with it send no XFRM notification
        (bond_ipsec_del_sa_all / add_sa_all talk to drivers only)."""
        old = self.active
        if new is old:
            return
        if self.mode == "active-backup" and old is not None:
            bond_ipsec_del_sa_all(self)
        self.active = new
        if self.mode == "active-backup" and new is not None:
            bond_ipsec_add_sa_all(self)
            call_netdevice_notifiers("NETDEV_BONDING_FAILOVER", self.dev)

    # -- /proc/net/bonding/<bond> -------------------------------------------------------------
    def proc_text(self) -> str:
        mode_name = {"active-backup": "fault-tolerance (active-backup)",
                     "balance-xor": "load balancing (xor)",
                     "802.3ad": "IEEE 802.3ad Dynamic link aggregation",
                     "balance-rr": "load balancing (round-robin)"}.get(self.mode, self.mode)
        lines = ["Ethernet Channel Bonding Driver: v6.18.0", "",
                 f"Bonding Mode: {mode_name}"]
        if self.mode in ("balance-xor", "802.3ad"):
            lines.append(f"Transmit Hash Policy: {self.xmit_hash_policy} "
                         f"({ {'layer2': 0, 'layer3+4': 1, 'layer2+3': 2}.get(self.xmit_hash_policy, 0)})")
        if self.mode == "active-backup":
            lines.append(f"Currently Active Slave: {self.active.name if self.active else 'None'}")
        lines += [f"MII Status: {'up' if self.usable_slaves() else 'down'}",
                  f"MII Polling Interval (ms): {self.miimon}", "Up Delay (ms): 0",
                  "Down Delay (ms): 0", "Peer Notification Delay (ms): 0"]
        if self.mode == "802.3ad":
            lines += ["", "802.3ad info", "LACP active: on", "LACP rate: slow",
                      "Min links: 0", "Aggregator selection policy (ad_select): stable"]
        for s in self.slaves:
            lines += ["", f"Slave Interface: {s.name}",
                      f"MII Status: {'up' if self._usable(s) else 'down'}",
                      "Speed: 100000 Mbps", "Duplex: full", "Link Failure Count: 0",
                      # bond_info_show_slave: slave->perm_hwaddr, the address before enslaving
                      "Permanent HW addr: " + ":".join(
                          f"{b:02x}" for b in getattr(s, "perm_hwaddr", s.address)),
                      # slave->queue_id; no line for slave->prio (rtnetlink only)
                      f"Slave queue ID: {s.bond_queue_id}"]
            if self.mode == "802.3ad":
                lines.append(f"Aggregator ID: {1 if self._usable(s) else 2}")
        return "\n".join(lines) + "\n"


@dataclass
class BondParams:
    """``struct bond_params`` with bonding_defaults (no module parameters)."""
    miimon: int = 0
    updelay: int = 0            # multiples of miimon, as the kernel stores them
    downdelay: int = 0
    peer_notif_delay: int = 0
    use_carrier: int = 1
    arp_interval: int = 0
    arp_targets: list[bytes] = field(default_factory=list)
    ns_targets: list[bytes] = field(default_factory=list)
    arp_validate: int = 0
    arp_all_targets: int = 0
    primary: str = ""
    primary_reselect: int = 0
    fail_over_mac: int = 0
    resend_igmp: int = 1
    num_peer_notif: int = 1
    all_slaves_active: int = 0
    min_links: int = 0
    lp_interval: int = 1
    packets_per_slave: int = 1
    lacp_active: int = 1
    lacp_fast: int = 0
    ad_select: int = 0
    tlb_dynamic_lb: int = 1
    missed_max: int = 2
    coupled_control: int = 1
    broadcast_neighbor: int = 0
    ad_actor_sys_prio: int = 65535
    ad_user_port_key: int = 0
    ad_actor_system: bytes = bytes(6)


def params(bond: Bond) -> BondParams:
    """``bond->params``, made on first use from the bond's miimon and a topology file's
    options."""
    p = bond.params
    if p is None:
        p = bond.params = BondParams(miimon=bond.miimon)
        opts = getattr(bond.dev, "options", None) or {}     # a topology file's bond options
        if opts.get("lacp_rate") in ("slow", "fast"):
            p.lacp_fast = int(opts["lacp_rate"] == "fast")
        if opts.get("ad_select") in AD_SELECT:
            p.ad_select = AD_SELECT.index(opts["ad_select"])
    return p


def bond_create(dev: NetDevice, spec: dict[str, Any]) -> None:
    """``bond_create`` / ``bond_init``: the bond's state, its xfrmdev ops and features
    (``bond_setup``: BOND_XFRM_FEATURES toggleable, on only in active-backup); ``spec``: a
    topology's mode, xmit_hash_policy, miimon, lag_model and lag_require."""
    bond = Bond(dev, spec.get("mode", "balance-rr"), spec.get("xmit_hash_policy", "layer2"),
                spec.get("miimon", 0), spec.get("lag_model", "off"))
    bond.lag_require = lag_require_words(spec.get("lag_require", []))
    dev.bond = bond
    dev.xfrmdev_ops = BondXfrmDevOps(bond)
    dev.driver = "bonding"
    ab = bond.mode == "active-backup"
    dev.features = NetdevFeatures(active=ESP_FEATURES if ab else (), hw=ESP_FEATURES,
                                  kind="bond")
    bond.set_lag_model(bond.lag_model)     # the model's ESP wanted bits


def bond_netdev_event(event: str, dev: NetDevice, **info: Any) -> None:
    """``bond_netdev_event``: the bond hears of its slaves' carrier changes and
    departures."""
    master = dev.master
    bond = getattr(master, "bond", None) if master is not None else None
    if bond is None:
        return
    if event in ("NETDEV_CHANGE", "NETDEV_UP", "NETDEV_DOWN"):
        bond.carrier_changed(dev, event)
    elif event == "NETDEV_UNREGISTER":
        bond.release(dev)
    elif event == "NETDEV_FEAT_CHANGE" and not bond.in_feat_change:
        # a slave's features changed: its model hears of it (the replicated model tries to
        # replicate onto it), the slave's own changes meanwhile not again
        bond.in_feat_change = True
        try:
            bond_ipsec_slave_features_changed(bond, dev)
        finally:
            bond.in_feat_change = False
