"""The link generation page (docs/protocol.md "The link generation page"): a file next to
the server's socket, ``<socket>.linkgen``, one page the server maps read-write and every
shim maps read-only. It holds the link generation (devices/linkgen.py): the shim keeps its
answers to ``if_nametoindex`` and ``ETHTOOL_GFEATURES`` while the generation it read before
asking is still the page's, and asks again otherwise.

Layout (native byte order): u32 magic ``LINKGEN_MAGIC``, u32 0, u64 generation (one
aligned 64-bit store). A stopping server moves the generation once more, then removes the
file; a server that finds one (its predecessor died) starts above what it says. Either way
a shim still mapping the old page sees a change, and keeps nothing from the old server."""
from __future__ import annotations

import ctypes
import logging
import mmap
import os
import stat

from devices import linkgen

log = logging.getLogger(__name__)

LINKGEN_MAGIC = 0x6E67_6C78          # "xlgn"
PAGE = 4096


class LinkgenPage:
    def __init__(self, socket_path: str):
        self.path = socket_path + ".linkgen"
        self.mm: mmap.mmap | None = None
        self.gen: ctypes.c_uint64 | None = None
        self.base = 0

    def open(self) -> None:
        """Map the page, or publish none (the shim then asks every time): a file there that
        is not this user's regular file is left alone."""
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as e:
            log.warning("no link generation page at %s: %s", self.path, e.strerror)
            return
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                log.warning("no link generation page: %s is not this user's file", self.path)
                return
            os.fchmod(fd, 0o644)
            if st.st_size < PAGE:
                os.ftruncate(fd, PAGE)
            self.mm = mmap.mmap(fd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        magic = ctypes.c_uint32.from_buffer(self.mm, 0)
        self.gen = ctypes.c_uint64.from_buffer(self.mm, 8)
        # above anything a shim may have read from an earlier server
        self.base = (self.gen.value if magic.value == LINKGEN_MAGIC else 0) + 1
        magic.value = LINKGEN_MAGIC
        del magic
        self._publish(linkgen.link_generation())
        linkgen.watch(self._publish)

    def _publish(self, generation: int) -> None:
        if self.gen is not None:
            self.gen.value = (self.base + generation) & 0xFFFF_FFFF_FFFF_FFFF

    def close(self) -> None:
        if self.mm is None:
            return
        linkgen.unwatch(self._publish)
        self.base += 1                # whatever a shim kept is not this server's any more
        self._publish(linkgen.link_generation())
        self.gen = None
        try:
            self.mm.close()
        except BufferError:           # a ctypes view still held: the mapping goes at exit
            pass
        self.mm = None
        # moved first: a shim that still maps it keeps nothing from this server
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
