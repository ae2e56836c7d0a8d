"""Emulated device drivers (drivers/net/…) and the net core's device model they share
(``netdev``, ``features``, ``xfrmdev``, which xfrmd/rtnl, xfrmd/xfrm and xfrmd/genl import).
This package init imports nothing, so importing the net core does not load the drivers;
the drivers' init call is :func:`devices.drivers.init`."""
