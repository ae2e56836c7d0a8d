"""Packets from real sockets: UDP datagram sockets of programs under the shim, carried by the
emulated stack (routing, the SPD/SAD and ESP of :mod:`xfrmd.datapath`, veth pairs between
emulated namespaces). The wire format between shim and server is in docs/protocol.md,
"INET connection"; the per-namespace socket table and the send/receive glue in
:mod:`xfrmd.inet.udp`."""
