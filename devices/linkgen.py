"""The link generation: a counter that moves whenever what ``if_nametoindex`` or
``ETHTOOL_GFEATURES`` answers may have changed — a device registered, unregistered, renamed
or moved to another namespace (every netdevice notifier event), or any of its feature masks
(``hw``, ``wanted``, ``active``) set to a new value, ``wanted``-only changes included, which
the kernel announces to nobody. The server publishes it in the shared page the shim reads
(docs/protocol.md "The link generation page"), so that the shim may keep those answers
without asking. One counter for every kernel of the process: moving too often only costs
the shim a question."""
from __future__ import annotations

from typing import Callable

_generation = 0
_watchers: list[Callable[[int], None]] = []


def link_generation() -> int:
    return _generation


def link_changed() -> None:
    """A link answer may have changed: the generation moves, and every watcher is told
    before the change can be answered to anyone."""
    global _generation
    _generation += 1
    for fn in list(_watchers):
        fn(_generation)


def watch(fn: Callable[[int], None]) -> None:
    _watchers.append(fn)


def unwatch(fn: Callable[[int], None]) -> None:
    if fn in _watchers:
        _watchers.remove(fn)
