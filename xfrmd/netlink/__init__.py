"""The netlink core of the emulated kernel (net/netlink/af_netlink.c)."""
