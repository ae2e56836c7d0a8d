"""A small emulated ESP data path: enough to watch sequence numbers, anti-replay windows and
byte/packet lifetimes of (replicated) SAs move, as the LAG offload debate needs."""
