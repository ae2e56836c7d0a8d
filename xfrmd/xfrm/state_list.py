"""``net->xfrm.state_all``: every SA of a namespace in insertion order (dumps walk it newest
first, as ``xfrm_state_walk`` walks the kernel's list from its head).

A list, not a dict keyed by the state: an insert appends and records the state's position
in it (``x.all_pos``), a removal writes None there, and when the holes outnumber the states
the list is rebuilt without them. At a million SAs a dict insert read a random index slot
and the entries of its collisions (cold lines); an append writes the list's hot end. Removals
come only from :meth:`xfrmd.xfrm.sadb.StateDb.gc_task`, at the end of a grace period,
between requests (docs/performance.md, "The SAD's 1M curve (session 12)").

Readers see the mapping-like part a dict of states gave them: ``len`` (the states, not the
holes), iteration and ``values()`` in insertion order."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from .state import SecurityAssociation

# holes tolerated before a rebuild is considered (a small table is never rebuilt per delete)
_MIN_HOLES = 64


class StateList:
    """The states in insertion order, with holes where removed ones were."""
    __slots__ = ("slots", "holes")

    def __init__(self) -> None:
        self.slots: list[SecurityAssociation | None] = []
        self.holes = 0

    def append(self, x: SecurityAssociation) -> None:
        """At the end, its place recorded on the state."""
        slots = self.slots
        x.all_pos = len(slots)
        slots.append(x)

    def remove_all(self, gone: list[SecurityAssociation]) -> None:
        """Take these states out (each in the list); rebuild once holes outnumber states."""
        slots = self.slots
        for x in gone:
            pos = x.all_pos
            if slots[pos] is x:
                slots[pos] = None
                self.holes += 1
        if self.holes > _MIN_HOLES and 2 * self.holes > len(slots):
            self.compact()

    def compact(self) -> None:
        """The list without its holes, every state's position renumbered. In place: a new
        list of a million states would be a young object the next collection walks whole
        (an old or frozen one is not walked by it)."""
        slots, n = self.slots, 0
        for x in slots:
            if x is not None:
                x.all_pos = n
                slots[n] = x
                n += 1
        del slots[n:]
        self.holes = 0

    def clear(self) -> None:
        self.slots, self.holes = [], 0

    def __len__(self) -> int:
        return len(self.slots) - self.holes

    def __iter__(self) -> Iterator[SecurityAssociation]:
        return iter(self.values())

    def values(self) -> list[SecurityAssociation]:
        """The states, oldest first (a copy: a dump keeps it while the table changes)."""
        if not self.holes:
            return self.slots.copy()        # type: ignore[return-value]
        return [x for x in self.slots if x is not None]

    def __contains__(self, x: object) -> bool:
        pos = getattr(x, "all_pos", -1)
        slots = self.slots
        return 0 <= pos < len(slots) and slots[pos] is x
