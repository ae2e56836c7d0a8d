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
        self.dev = dev
        self.mode = mode
        self.xmit_hash_policy = xmit_hash_policy
        self.miimon = miimon
        self.lag_model = lag_model
        self.slaves: list = []
        self.active = None
        self.ipsec_list: list = []      # offloaded states (bond->ipsec_list)

    # -- slaves ----------------------------------------------------------------------------
    def enslave(self, slave) -> None:
        if slave in self.slaves:
            return
        slave.master = self.dev
        self.slaves.append(slave)
        if self.active is None and self._usable(slave):
            self.change_active(slave)

    def release(self, slave) -> None:
        if slave not in self.slaves:
            return
        was_active = slave is self.active
        self.slaves.remove(slave)
        slave.master = None
        if was_active:
            self.change_active(self._select())

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

    def carrier_changed(self, slave) -> None:
        """A slave's link went up or down (miimon / NETDEV_CHANGE)."""
        if slave not in self.slaves:
            return
        if slave is self.active and not self._usable(slave):
            self.change_active(self._select())
        elif self.active is None and self._usable(slave):
            self.change_active(slave)

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
        bond.carrier_changed(dev)
    elif event == "NETDEV_UNREGISTER":
        bond.release(dev)


def _register() -> None:
    from devices.netdev import register_netdevice_notifier
    register_netdevice_notifier(_netdev_event)


_register()
