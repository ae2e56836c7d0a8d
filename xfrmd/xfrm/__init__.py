"""The XFRM subsystem: xfrm_user (netlink), the SAD and SPD, lifetimes and events."""
