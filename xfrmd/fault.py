"""Fault injection (``xfrmd ctl fault``): the next N requests that match a rule misbehave the
way a loaded or racing kernel can, so that IKE daemons can be tested against it. Sans-IO.

A rule matches requests by message type (``XFRM_MSG_NEWSA``, ``RTM_NEWLINK``, or any), and
optionally by namespace, by the sender's process id and by its command name (``comm``, which
whoever does the I/O resolves through :attr:`FaultTable.comm_of`). Its action:

``fail ERRNO [extack TEXT]``
    the request is not handled at all; it is answered with NLMSG_ERROR ``-ERRNO`` and the
    text, as a handler refusing it would (``netlink_ack``).
``drop``
    the request is handled (state changes, events go out) but its answer — ACK, error, reply
    or every datagram of a dump — is never sent.
``delay SECONDS``
    handled now; its answer is queued on the socket when a kernel timer fires SECONDS later
    on the kernel's clock. The reactor never blocks: it sleeps until the kernel's next
    deadline as for any timer. ``xfrmd ctl clock advance`` runs the timer early.
``dump-intr``
    only dump requests match. The dump runs, and as if the generation counter had changed
    after its first datagram, the first message of the next datagram (or the NLMSG_DONE when
    everything fitted in one) carries NLM_F_DUMP_INTR — what ``nl_dump_check_consistent``
    does when ``cb->seq`` moves under a dump.
``overflow [group G | port P]``
    handled and answered, but the receive buffers of the targets are full while it runs:
    they lose every event it sends and their next read fails with ENOBUFS
    (``netlink_overrun``). Targets: the members of multicast group G, the socket bound to
    port P, or (neither) every socket of the request's protocol in the request's namespace
    that joined any group.

Rules are tried in the order they were added; the first that matches (after skipping its
first ``skip`` matches) fires and counts down. Spent rules stay listed until cleared.
"""
from __future__ import annotations

import contextlib
import errno as E
import logging
import math
from dataclasses import dataclass, field
from typing import Callable

from netlink_codec.netlink import NETLINK_ROUTE, NETLINK_XFRM, NLM_F_ACK, NLM_F_DUMP, kernel_messages
from netlink_codec.xfrm import XfrmMsg, XfrmNlGrp

from .netlink.core import Reply, netlink_ack, netlink_rcv_msg

log = logging.getLogger("xfrmd.fault")

ACTIONS = ("fail", "drop", "delay", "dump-intr", "overflow")
MAX_DELAY = 86400.0

# include/uapi/linux/rtnetlink.h: the message types (NEW, DEL, GET, SET of each object)
RTM_TYPES = {
    "NEWLINK": 16, "DELLINK": 17, "GETLINK": 18, "SETLINK": 19,
    "NEWADDR": 20, "DELADDR": 21, "GETADDR": 22,
    "NEWROUTE": 24, "DELROUTE": 25, "GETROUTE": 26,
    "NEWNEIGH": 28, "DELNEIGH": 29, "GETNEIGH": 30,
    "NEWRULE": 32, "DELRULE": 33, "GETRULE": 34,
    "NEWQDISC": 36, "DELQDISC": 37, "GETQDISC": 38,
    "NEWNETCONF": 80, "DELNETCONF": 81, "GETNETCONF": 82,
    "NEWNSID": 88, "DELNSID": 89, "GETNSID": 90,
    "NEWSTATS": 92, "GETSTATS": 94,
    "NEWNEXTHOP": 104, "DELNEXTHOP": 105, "GETNEXTHOP": 106,
    "NEWLINKPROP": 108, "DELLINKPROP": 109,
}
# include/uapi/linux/rtnetlink.h enum rtnetlink_groups (the ones that carry events xfrmd sends)
RTNL_GROUPS = {
    "LINK": 1, "NOTIFY": 2, "NEIGH": 3, "TC": 4, "IPV4_IFADDR": 5, "IPV4_MROUTE": 6,
    "IPV4_ROUTE": 7, "IPV4_RULE": 8, "IPV6_IFADDR": 9, "IPV6_MROUTE": 10, "IPV6_ROUTE": 11,
    "IPV6_IFINFO": 12, "IPV6_PREFIX": 18, "IPV6_RULE": 19, "ND_USEROPT": 20,
    "IPV4_NETCONF": 24, "IPV6_NETCONF": 25, "NSID": 28,
}
PROTO_NAMES = {NETLINK_XFRM: "xfrm", NETLINK_ROUTE: "route"}


def message_type(name: str) -> tuple[int, int] | None:
    """``XFRM_MSG_NEWSA`` → (NETLINK_XFRM, 16); ``RTM_NEWLINK`` → (NETLINK_ROUTE, 16);
    ``any`` → None (every request). Case does not matter. ValueError if unknown."""
    n = name.strip().upper()
    if n in ("ANY", "*"):
        return None
    if n.startswith("XFRM_MSG_") and n[9:] in XfrmMsg.__members__:
        return NETLINK_XFRM, int(XfrmMsg[n[9:]])
    if n.startswith("RTM_") and n[4:] in RTM_TYPES:
        return NETLINK_ROUTE, RTM_TYPES[n[4:]]
    raise ValueError(f"unknown message type {name!r} (XFRM_MSG_… or RTM_… names, or any)")


def type_name(proto: int | None, t: int | None) -> str:
    if proto is None:
        return "any"
    if proto == NETLINK_XFRM:
        try:
            return "XFRM_MSG_" + XfrmMsg(t).name
        except ValueError:
            pass
    for k, v in RTM_TYPES.items():
        if proto == NETLINK_ROUTE and v == t:
            return "RTM_" + k
    return f"{PROTO_NAMES.get(proto, proto)}#{t}"


def multicast_group(name: str) -> tuple[int | None, int]:
    """``XFRMNLGRP_ACQUIRE`` → (NETLINK_XFRM, 1), ``RTNLGRP_LINK`` → (NETLINK_ROUTE, 1), a bare
    number → (None, n): the matched request's protocol."""
    n = str(name).strip().upper()
    if n.startswith("XFRMNLGRP_") and n[10:] in XfrmNlGrp.__members__ and n[10:] != "NONE":
        return NETLINK_XFRM, int(XfrmNlGrp[n[10:]])
    if n.startswith("RTNLGRP_") and n[8:] in RTNL_GROUPS:
        return NETLINK_ROUTE, RTNL_GROUPS[n[8:]]
    try:
        g = int(n, 0)
    except ValueError:
        raise ValueError(f"unknown multicast group {name!r} (XFRMNLGRP_… or RTNLGRP_… names, "
                         "or a number)") from None
    if not 1 <= g <= 32:
        raise ValueError(f"multicast group {g} out of range 1..32")
    return None, g


def errno_value(v) -> int:
    """``ENOMEM``, ``enomem``, ``12`` → 12."""
    s = str(v).strip()
    if s.upper() in E.__dict__ and s.upper().startswith("E") and isinstance(E.__dict__[s.upper()], int):
        return E.__dict__[s.upper()]
    try:
        n = int(s, 0)
    except ValueError:
        raise ValueError(f"unknown errno {v!r} (a name such as ENOMEM, or a number)") from None
    if not 1 <= n <= 4095:
        raise ValueError(f"errno {n} out of range 1..4095")
    return n


@dataclass
class FaultRule:
    id: int
    action: str
    proto: int | None = None       # None: any protocol (and any type)
    msg_type: int | None = None
    netns: str | None = None
    pid: int | None = None
    comm: str | None = None
    count: int | None = 1          # None: every match, until cleared
    skip: int = 0                  # matches to let pass first
    errno: int = 0
    extack: str | None = None
    delay: float = 0.0
    group: tuple[int | None, int] | None = None
    port: int | None = None
    hits: int = 0                  # times it fired
    passed: int = 0                # matches skipped so far

    @classmethod
    def from_request(cls, rid: int, req: dict) -> "FaultRule":
        """Build and check a rule from a service request (``xfrmd ctl fault``); ValueError
        with one line saying what is wrong."""
        action = req.get("action")
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
        mt = message_type(str(req.get("type", "any")))
        r = cls(rid, action, *(mt or (None, None)))
        if req.get("netns") is not None:
            r.netns = str(req["netns"])
        if req.get("pid") is not None:
            r.pid = _int(req["pid"], "pid", 1)
        if req.get("comm") is not None:
            r.comm = str(req["comm"])[:15]         # TASK_COMM_LEN - 1, as /proc shows it
        count = req.get("count", 1)
        r.count = None if count in (None, "always") else _int(count, "count", 1)
        r.skip = _int(req.get("skip", 0), "skip", 0)
        if action == "fail":
            if req.get("errno") is None:
                raise ValueError("fail needs an errno (fail ENOMEM, fail EINVAL extack TEXT)")
            r.errno = errno_value(req["errno"])
            r.extack = str(req["extack"]) if req.get("extack") not in (None, "") else None
        elif req.get("extack") is not None:
            raise ValueError("extack goes with fail")
        if action == "delay":
            try:
                r.delay = float(req.get("seconds"))
            except (TypeError, ValueError):
                raise ValueError("delay needs SECONDS (a number)") from None
            if not (math.isfinite(r.delay) and 0 <= r.delay <= MAX_DELAY):
                raise ValueError(f"delay SECONDS must be within 0..{MAX_DELAY:g}")
        if action == "overflow":
            if req.get("group") is not None and req.get("port") is not None:
                raise ValueError("overflow takes group G or port P, not both")
            if req.get("group") is not None:
                r.group = multicast_group(req["group"])
            if req.get("port") is not None:
                r.port = _int(req["port"], "port", 0) & 0xFFFFFFFF
        elif req.get("group") is not None or req.get("port") is not None:
            raise ValueError("group and port go with overflow")
        if action == "dump-intr" and r.proto is not None and not _is_get(r.proto, r.msg_type):
            raise ValueError(f"dump-intr needs a dump request type (a GET), not {type_name(r.proto, r.msg_type)}")
        return r

    def as_dict(self) -> dict:
        d = {"id": self.id, "type": type_name(self.proto, self.msg_type), "action": self.action,
             "remaining": "always" if self.count is None else self.count - self.hits,
             "hits": self.hits}
        for k in ("netns", "pid", "comm"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.skip:
            d["skip"] = self.skip
        if self.action == "fail":
            d["errno"] = E.errorcode.get(self.errno, self.errno)
            if self.extack:
                d["extack"] = self.extack
        if self.action == "delay":
            d["seconds"] = self.delay
        if self.group is not None:
            d["group"] = self.group[1] if self.group[0] is None else _group_name(*self.group)
        if self.port is not None:
            d["port"] = self.port
        return d

    @property
    def spent(self) -> bool:
        return self.count is not None and self.hits >= self.count


def _int(v, what: str, low: int) -> int:
    try:
        n = int(str(v), 0)
    except ValueError:
        raise ValueError(f"{what} must be a number, not {v!r}") from None
    if n < low:
        raise ValueError(f"{what} must be at least {low}")
    return n


def _is_get(proto: int, t: int) -> bool:
    """A type whose request can be a dump: rtnetlink's GETs, xfrm_user's GETSA/GETPOLICY."""
    if proto == NETLINK_ROUTE:
        return t >= 16 and (t - 16) & 3 == 2
    if proto == NETLINK_XFRM:
        return t in (XfrmMsg.GETSA, XfrmMsg.GETPOLICY)
    return True


def _is_dump(proto: int, t: int, flags: int) -> bool:
    """What the family dispatches as a dump: rtnetlink_rcv_msg takes either NLM_F_DUMP bit
    on a GET; xfrm_user_rcv_msg and genetlink want both (0x300 is NLM_F_EXCL|NLM_F_CREATE
    on a NEW request)."""
    if proto == NETLINK_ROUTE:
        return bool(flags & NLM_F_DUMP) and _is_get(proto, t)
    return flags & NLM_F_DUMP == NLM_F_DUMP and _is_get(proto, t)


def _group_name(proto: int, g: int) -> str:
    if proto == NETLINK_XFRM:
        return "XFRMNLGRP_" + XfrmNlGrp(g).name
    return "RTNLGRP_" + next(k for k, v in RTNL_GROUPS.items() if v == g)


@dataclass
class FaultTable:
    """The kernel's fault rules (``kernel.faults``). ``rules`` is empty unless a fault is
    armed, so the dispatch path pays one truth test."""
    rules: list = field(default_factory=list)
    spent: list = field(default_factory=list)
    comm_of: Callable[[int], str | None] | None = None   # pid → comm, set by the I/O side
    _ids: int = 0

    def add(self, req: dict) -> FaultRule:
        rule = FaultRule.from_request(self._ids + 1, req)
        self._ids += 1
        self.rules.append(rule)
        return rule

    def clear(self, rid: int | None = None) -> int:
        before = len(self.rules) + len(self.spent)
        if rid is None:
            self.rules, self.spent = [], []
        else:
            self.rules = [r for r in self.rules if r.id != rid]
            self.spent = [r for r in self.spent if r.id != rid]
        return before - len(self.rules) - len(self.spent)

    def listing(self) -> list[dict]:
        return [r.as_dict() for r in sorted(self.rules + self.spent, key=lambda r: r.id)]

    # -- matching ------------------------------------------------------------------------

    def _match(self, sock, hdr) -> FaultRule | None:
        for rule in self.rules:
            if rule.proto is not None and (rule.proto != sock.protocol or rule.msg_type != hdr.type):
                continue
            if rule.action == "dump-intr" and not _is_dump(sock.protocol, hdr.type, hdr.flags):
                continue
            if rule.netns is not None and rule.netns != sock.netns.name:
                continue
            if rule.pid is not None and rule.pid != sock.pid:
                continue
            if rule.comm is not None:
                comm = self.comm_of(sock.pid) if self.comm_of and sock.pid else None
                if comm != rule.comm:
                    continue
            if rule.passed < rule.skip:
                rule.passed += 1
                continue
            rule.hits += 1
            if rule.spent:
                self.rules.remove(rule)
                self.spent.append(rule)
            return rule
        return None

    # -- the hook in netlink_rcv_skb -----------------------------------------------------

    def rcv_msg(self, kernel, sock, buf, hdr, family) -> bool:
        """Called for each request message before its family sees it. False: no rule
        matched, dispatch as usual. True: the fault handled the message (answered or not)."""
        rule = self._match(sock, hdr)
        if rule is None:
            return False
        log.info("fault %d (%s) fires on %s seq=%d from pid %d in %s", rule.id, rule.action,
                 type_name(sock.protocol, hdr.type), hdr.seq, sock.pid, sock.netns.name)
        if rule.action == "fail":
            # the request never reaches its handler: nothing is applied
            netlink_ack(kernel, sock, buf, hdr, Reply(-rule.errno, rule.extack))
            return True
        if rule.action in ("drop", "delay"):
            if _is_dump(sock.protocol, hdr.type, hdr.flags):
                # a dump changes nothing and reads the tables as it goes: losing its answer
                # is not running it, delaying its answer is running it late
                if rule.action == "delay":
                    one = bytes(buf[hdr.offset:hdr.offset + hdr.len])
                    kernel.add_timer(rule.delay, lambda: _late(kernel, sock, one, family))
                return True
            answers = _captured(kernel, sock, lambda: netlink_rcv_msg(kernel, sock, buf, hdr, family))
            if rule.action == "delay":
                kernel.add_timer(rule.delay, lambda: _release(kernel, sock, answers))
            return True
        if rule.action == "dump-intr":
            running = sock.dump                 # a dump this request did not start
            netlink_rcv_msg(kernel, sock, buf, hdr, family)
            if sock.dump is not None and sock.dump is not running:
                sock.dump.intr = True           # the generation moved after datagram one
            return True
        # overflow: the targets' buffers are full while the request runs
        targets = self._targets(sock, rule)
        for t in targets:
            t.overrun()                         # ENOBUFS on the next read, congested
            kernel.dirty.add(t)
        with _shadow(kernel, "multicast", _dropping(kernel, targets)):
            netlink_rcv_msg(kernel, sock, buf, hdr, family)
        return True

    @staticmethod
    def _targets(sock, rule: FaultRule) -> list:
        ns = sock.netns
        if rule.port is not None:
            s = ns.ports.get(sock.protocol, {}).get(rule.port)
            return [s] if s is not None else []
        if rule.group is not None:
            proto, g = rule.group
            proto = sock.protocol if proto is None else proto
            return [s for s in ns.sockets.get(proto, ()) if s.member(g)]
        return [s for s in ns.sockets.get(sock.protocol, ()) if s.groups]


@contextlib.contextmanager
def _shadow(kernel, name: str, fn):
    """The kernel's method ``name`` is ``fn`` for the duration (every caller looks it up on
    the kernel object)."""
    setattr(kernel, name, fn)
    try:
        yield
    finally:
        delattr(kernel, name)


def _captured(kernel, sock, fn) -> list[tuple[bytes, int]]:
    """Run ``fn`` keeping what it unicasts to ``sock`` (its answers, with the truesize each
    would be charged) instead of queueing it; what goes to other sockets goes out as usual."""
    out: list[tuple[bytes, int]] = []
    real = type(kernel).unicast

    def unicast(s, datagram, truesize=0):
        if s is not sock:
            return real(kernel, s, datagram, truesize)
        out.append((datagram, truesize))
        return True                 # taken: it goes out when (if ever) the fault says
    with _shadow(kernel, "unicast", unicast):
        fn()
    return out


def _release(kernel, sock, answers: list[tuple[bytes, int]]) -> None:
    """A delayed answer is due: queue it (now subject to the receive buffer)."""
    if not sock.closed:
        for d, truesize in answers:
            kernel.unicast(sock, d, truesize)


def _late(kernel, sock, message: bytes, family) -> None:
    """A delayed dump request runs now."""
    if not sock.closed:
        for hdr in kernel_messages(message):
            netlink_rcv_msg(kernel, sock, message, hdr, family)


def _dropping(kernel, targets: list):
    """``netlink_broadcast`` where the targets have no room: each of their copies is dropped
    (``netlink_overrun``); the other members get theirs."""
    real = type(kernel).multicast
    lost = set(targets)

    def multicast(netns, protocol, group, datagram):
        full = [(s, s.groups) for s in netns.sockets.get(protocol, ()) if s in lost and s.member(group)]
        for s, _ in full:           # out of the delivery for this one call
            s.groups = 0
        try:
            real(kernel, netns, protocol, group, datagram)
        finally:
            for s, groups in full:
                s.groups = groups
        for s, _ in full:
            for t in kernel.tracers:
                t("event", s, datagram)
            s.overrun()
    return multicast
