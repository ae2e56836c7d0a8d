"""The bond device (drivers/net/bonding): modes, slaves, active slave selection and failover,
802.3ad aggregator membership from carrier (no LACPDUs), and ``/proc/net/bonding/<bond>``."""
from __future__ import annotations

MODES = ["balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb",
         "balance-alb"]


class Bond:
    """Attached to a bond NetDevice as ``dev.bond``."""

    def __init__(self, dev, mode: str = "balance-rr", xmit_hash_policy: str = "layer2",
                 miimon: int = 0, lag_model: str = "off"):
        if mode not in MODES:
            raise ValueError(f"bond mode {mode!r} is not one of {', '.join(MODES)}")
        if lag_model not in ("off", "replicated", "shared"):
            raise ValueError(f"lag_model {lag_model!r} is not one of off, replicated, shared")
        self.dev = dev
        self.mode = mode
        self.xmit_hash_policy = xmit_hash_policy
        self.miimon = miimon
        self.lag_model = lag_model
        self.slaves: list = []
        self.active = None
        # bond->ipsec_list: bonding.offload.BondIpsec entries (``.x`` is the xfrm_state)
        self.ipsec_list: list = []
        self.ipsec_lag_block_count = 0  # LAG adds refused with EAGAIN while > 0 (P38)
        self.lag_flush_notify = False   # xfrmd switch: DELSA for states a LAG flush deletes

    def lag_eligible(self) -> bool:
        """``bond_mode_can_use_lag_xfrm``: 802.3ad or balance-xor hashing layer3+4."""
        return self.mode in ("802.3ad", "balance-xor") and self.xmit_hash_policy == "layer3+4"

    # -- slaves ----------------------------------------------------------------------------
    def enslave(self, slave) -> None:
        from .offload import bond_ipsec_topology_begin, bond_ipsec_topology_end
        if slave in self.slaves:
            return
        bond_ipsec_topology_begin(self, "enslave", slave)
        slave.master = self.dev
        self.slaves.append(slave)
        if self.active is None and self._usable(slave):
            self.change_active(slave)
        _compute_features(self)
        bond_ipsec_topology_end(self, "enslave", slave)

    def release(self, slave) -> None:
        """``__bond_release_one``: the newest LAG series flushes before detaching; the RFC
        updates the slave array first, then drops the departing slave's replicas."""
        from .offload import bond_ipsec_topology_begin, bond_ipsec_topology_end
        if slave not in self.slaves:
            return
        bond_ipsec_topology_begin(self, "release", slave)
        was_active = slave is self.active
        self.slaves.remove(slave)
        if was_active:
            self.change_active(self._select())
        bond_ipsec_topology_end(self, "release", slave)
        slave.master = None
        _compute_features(self)

    # -- options (called by the netlink/sysfs option code) ---------------------------------------
    def set_xmit_hash_policy(self, policy: str) -> None:
        """``bond_option_xmit_hash_policy_set`` with the LAG series' XFRM handling: the
        newest series flushes the bond's states when the old or the new setting is
        LAG-eligible, the RFC when leaving LAG; then the bond's ESP features follow."""
        from .offload import bond_ipsec_config_change
        old = self.lag_eligible()
        saved, self.xmit_hash_policy = self.xmit_hash_policy, policy
        new = self.lag_eligible()
        self.xmit_hash_policy = saved
        bond_ipsec_config_change(self, old, new)
        self.xmit_hash_policy = policy
        if self.lag_model != "off":
            bond_set_xfrm_features(self, entering_lag=new and not old)

    def set_mode(self, mode: str) -> None:
        """``bond_option_mode_set`` (the caller checks the bond is down without slaves):
        XFRM flush as for the hash policy, then ``bond_set_xfrm_features``."""
        from .offload import bond_ipsec_config_change
        if mode not in MODES:
            raise ValueError(f"bond mode {mode!r} is not one of {', '.join(MODES)}")
        old = self.lag_eligible()
        saved, self.mode = self.mode, mode
        new = self.lag_eligible()
        self.mode = saved
        bond_ipsec_config_change(self, old, new)
        self.mode = mode
        bond_set_xfrm_features(self, entering_lag=new and not old)

    def set_lag_model(self, model: str) -> None:
        """``xfrmd ctl lag-model`` / the topology: choose how the bond offloads IPsec; the
        ESP wanted bits become what a bond created under that model has."""
        self.lag_model = model
        bond_set_xfrm_features(self, entering_lag=self.lag_eligible())

    @staticmethod
    def _usable(slave) -> bool:
        return slave.up and slave.carrier

    def usable_slaves(self) -> list:
        """Slaves that carry traffic: in 802.3ad those with carrier are in the aggregator."""
        return [s for s in self.slaves if self._usable(s)]

    def _select(self):
        """``bond_find_best_slave``: the first usable slave in enslave order."""
        for s in self.slaves:
            if self._usable(s):
                return s
        return None

    def carrier_changed(self, slave, event: str = "NETDEV_CHANGE") -> None:
        """A slave's link went up or down (miimon / NETDEV_CHANGE, NETDEV_UP, NETDEV_DOWN).
        LAG offload models react around the change (bonding.offload)."""
        from .offload import bond_ipsec_topology_begin, bond_ipsec_topology_end
        if slave not in self.slaves:
            return
        bond_ipsec_topology_begin(self, event, slave)
        if slave is self.active and not self._usable(slave):
            self.change_active(self._select())
        elif self.active is None and self._usable(slave):
            self.change_active(slave)
        bond_ipsec_topology_end(self, event, slave)

    def change_active(self, new) -> None:
        """``bond_change_active_slave``: offloaded SAs leave the old active slave before the
        switch and are added on the new one after it (active-backup)."""
        from .offload import bond_ipsec_add_sa_all, bond_ipsec_del_sa_all
        old = self.active
        if new is old:
            return
        if self.mode == "active-backup" and old is not None:
            bond_ipsec_del_sa_all(self)
        self.active = new
        if self.mode == "active-backup" and new is not None:
            bond_ipsec_add_sa_all(self)
            _failover_notify(self)

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
                      "Permanent HW addr: " + ":".join(f"{b:02x}" for b in s.address),
                      "Slave queue ID: 0"]
            if self.mode == "802.3ad":
                lines.append(f"Aggregator ID: {1 if self._usable(s) else 2}")
        return "\n".join(lines) + "\n"


def _netdev_event(event: str, dev, **info) -> None:
    """The bond hears of its slaves' carrier changes and departures (bond_netdev_event)."""
    master = getattr(dev, "master", None)
    bond = getattr(master, "bond", None) if master is not None else None
    if bond is None:
        return
    if event in ("NETDEV_CHANGE", "NETDEV_UP", "NETDEV_DOWN"):
        bond.carrier_changed(dev, event)
    elif event == "NETDEV_UNREGISTER":
        bond.release(dev)
    elif event == "NETDEV_FEAT_CHANGE" and bond.lag_model == "replicated" \
            and not getattr(bond, "_in_feat", False):
        # RFC R4: a slave's features changed: sync, then try to replicate onto it
        from .offload import bond_ipsec_lag_add_slave
        bond._in_feat = True
        try:
            bond_ipsec_lag_add_slave(bond, dev)
        finally:
            bond._in_feat = False


def _failover_notify(bond) -> None:
    """NETDEV_BONDING_FAILOVER → rtnetlink_event: an RTM_NEWLINK of the bond on RTNLGRP_LINK.
    The SAs moving with it send no XFRM notification (bond_ipsec_del_sa_all / add_sa_all
    talk to drivers only)."""
    ns = bond.dev.netns
    kernel = getattr(ns, "kernel", None) if ns is not None else None
    if kernel is None:
        return
    try:
        from netlink_codec.netlink import NETLINK_ROUTE
        from xfrmd.rtnl.link import RTM_NEWLINK, fill_ifinfo
    except ImportError:
        return
    kernel.multicast(ns, NETLINK_ROUTE, 1, fill_ifinfo(bond.dev, RTM_NEWLINK, 0, 0))


def _features_module():
    try:
        from devices import features
    except ImportError:
        return None
    return features


def _compute_features(bond) -> None:
    """``bond_compute_features`` → ``netdev_update_features`` when the feature code has it."""
    f = _features_module()
    upd = getattr(f, "netdev_update_features", None) if f is not None else None
    if upd is not None and bond.dev.features is not None and hasattr(bond.dev.features, "wanted_mask"):
        upd(bond.dev)


def bond_set_xfrm_features(bond, entering_lag: bool = False) -> None:
    """The ESP ``wanted_features`` of the bond's model (P40 ``bond_set_xfrm_features``, RFC
    R4, upstream ``bond_option_mode_set``), then the features are recomputed:

    * ``off``: wanted in active-backup, cleared otherwise (upstream);
    * ``replicated``: wanted in active-backup; entering LAG clears them (the user opts in
      with ``ethtool -K BOND esp-hw-offload on``); other modes cleared;
    * ``shared``: wanted in active-backup and in LAG-eligible configurations, cleared
      otherwise; they take effect once every running slave qualifies."""
    dev = bond.dev
    f = dev.features
    if f is None:
        return
    ab = bond.mode == "active-backup"
    if bond.lag_model == "shared":
        want = ab or bond.lag_eligible()
    elif bond.lag_model == "replicated":
        if ab:
            want = True
        elif bond.lag_eligible():
            want = None if not entering_lag else False     # None: leave the user's choice
        else:
            want = False
    else:
        want = ab
    if want is None:
        _compute_features(bond)
        return
    from devices.features import ESP_FEATURES
    if hasattr(f, "wanted_mask"):
        from devices.features import BIT
        m = 0
        for n in ESP_FEATURES:
            m |= 1 << BIT[n]
        f.wanted_mask = (f.wanted_mask | m) if want else (f.wanted_mask & ~m)
        _compute_features(bond)
    else:                                   # plain name sets: wanted passes through
        f.wanted = (set(f.wanted) | set(ESP_FEATURES)) if want else (set(f.wanted) - set(ESP_FEATURES))
        f._active = (set(f._active) | set(ESP_FEATURES)) if want else (set(f._active) - set(ESP_FEATURES))


def _register() -> None:
    from devices.netdev import register_netdevice_notifier
    register_netdevice_notifier(_netdev_event)


_register()
