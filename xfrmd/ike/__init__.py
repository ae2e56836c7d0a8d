"""Run real IKE daemons (strongSwan charon, libreswan pluto) against xfrmd.

A *kernel pair* is two real network namespaces joined by a veth pair — so IKE's UDP flows
over the real kernel — and one xfrmd server with two emulated namespaces, ``left`` and
``right``, whose devices and addresses mirror the real ones. Each daemon runs in its real
netns with the preload shim and ``XFRMD_NETNS`` naming its emulated kernel, so it installs
its SAs and policies into xfrmd. See :mod:`xfrmd.ike.pair` and docs/ike.md.
"""
