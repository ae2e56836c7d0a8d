"""How unmodified IKE daemons react to a misbehaving kernel (`xfrmd ctl fault`): strongSwan
charon 5.9.8 and libreswan pluto 4.10, each pair over a real veth with its SAs and policies in
xfrmd. Every test pins the daemon's own log lines (docs/ike.md, "Faults") and checks that the
fault fired (its hit count), so a daemon that stopped sending the request fails the test.

The side called ``left`` initiates; faults are armed for the ``left`` (or ``right``) namespace
only. A daemon that a fault leaves blocked for ever is killed with SIGKILL (it would not
answer SIGTERM either)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from xfrmd.ike import charon, pluto

from . import ike_helpers
from .conftest import require_userland
from .ike_helpers import require_charon, require_pluto, require_root, wait


def _require(cls):
    require_root()
    if cls is pluto.Pluto:
        require_pluto()
    else:
        require_charon()


def _wait(cond, timeout=10.0):
    return wait(cond, timeout, interval=0.05)


class Pair(ike_helpers.Pair):
    """Two daemons of one kind in a KernelPair, with fault rules armed through the service
    (what `xfrmd ctl fault` sends). ``faults`` are armed before the daemons start;
    ``knl`` adds lines to charon's ``plugins.kernel-netlink`` section."""

    def __init__(self, tmp_path, cls, faults=(), knl: str = "", **opts):
        _require(cls)
        self.cls, self.knl, self.opts = cls, knl, opts
        super().__init__(tmp_path, self._make, self._make,
                         setup=lambda kp: [kp.fault(**f) for f in faults])

    def _make(self, kp, side, tmp):
        d = self.cls(kp.real, side, tmp, kp.env(side), **self.opts)
        if self.knl:
            conf = os.path.join(d.dir, "strongswan.conf")
            text = open(conf).read().replace(
                "  plugins {\n", "  plugins {\n    kernel-netlink {\n" + self.knl + "\n    }\n", 1)
            open(conf, "w").write(text)
        return d

    def arm(self, **rule) -> int:
        return self.kp.fault(**rule)

    def hits(self, rid: int) -> int:
        return next(f["hits"] for f in self.kp.faults() if f["id"] == rid)

    def kill(self, d) -> None:
        """SIGKILL for a daemon a fault left blocked."""
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10)


def _add_two_addresses_first_lost(p: Pair) -> None:
    """192.0.2.10 then .11 added on the left veth (``ip addr add``), the RTM_NEWADDR of the
    first one overrunning the left daemon's rtnetlink event socket (asserted: the rule hit)."""
    rid = p.arm(type="RTM_NEWADDR", action="overflow", group="RTNLGRP_IPV4_IFADDR",
                netns="left")
    env = {**os.environ, **p.kp.env("left")}
    for a in ("192.0.2.10", "192.0.2.11"):
        subprocess.run(["ip", "addr", "add", f"{a}/24", "dev", "veth-l"], env=env, check=True)
    assert p.hits(rid) == 1


def _ext_ack(p: Pair, side: str) -> set[bool]:
    """NETLINK_EXT_ACK on the daemon's NETLINK_XFRM sockets: without it Linux (and xfrmd)
    leaves the extack out of every answer."""
    return {s.ext_ack for s in p.kp.kernel.namespaces[side].sockets.get(6, ())}


def _lines(text: str, *patterns: str) -> list[str]:
    """The log lines that match each pattern, in order (pattern → first matching line)."""
    out = []
    for p in patterns:
        m = re.search(p, text, re.M)
        assert m, f"no line matches {p!r}"
        out.append(m.group(0))
    return out


# -- strongSwan charon 5.9.8 ------------------------------------------------------------------

@pytest.mark.parametrize("errno,extack,text", [
    ("ENOMEM", None, r"Cannot allocate memory \(12\)"),
    ("EINVAL", "xfrmd fault: SA refused", r"Invalid argument \(22\)"),
])
def test_charon_newsa_refused(tmp_path, errno, extack, text):
    """The outbound SA (charon's only NEWSA; the inbound one is UPDSA after GETSPI) refused:
    charon logs the errno — it never sets NETLINK_EXT_ACK, so no extack reaches it —
    deletes the CHILD_SA on both sides with a DELETE, keeps the IKE_SA, and does not retry."""
    with Pair(tmp_path, charon.Charon) as p:
        rid = p.arm(type="XFRM_MSG_NEWSA", action="fail", errno=errno, extack=extack, netns="left")
        r = p.left.initiate(timeout=5)
        assert p.hits(rid) == 1
        assert "initiate completed successfully" not in r.stdout
        log = p.left.logtext()
        _lines(log, r"\[KNL\] received netlink error: " + text,
               r"\[KNL\] unable to add SAD entry with SPI [0-9a-f]{8} \(FAILED\)",
               r"\[IKE\] unable to install outbound IPsec SA \(SAD\) in kernel",
               r"\[IKE\] failed to establish CHILD_SA, keeping IKE_SA",
               r"\[IKE\] sending DELETE for ESP CHILD_SA with SPI [0-9a-f]{8}")
        assert "xfrmd fault" not in log and _ext_ack(p, "left") == {False}
        assert _wait(lambda: p.kp.sad("left") == [] and p.kp.sad("right") == [])
        assert p.kp.spd("left") == []
        assert "ESTABLISHED" in p.left.list_sas() and "INSTALLED" not in p.left.list_sas()
        assert log.count("adding SAD entry") == 2         # inbound + the refused outbound


def test_charon_newpolicy_ack_lost_blocks_the_child_sa_for_ever(tmp_path):
    """charon's kernel-netlink waits for an answer without a timeout by default: the ACK of
    its first NEWPOLICY (the inbound policy) never comes, and the thread installing the
    CHILD_SA waits for ever, holding the IKE_SA (swanctl --initiate gives up); SIGTERM
    starts a shutdown that never ends."""
    with Pair(tmp_path, charon.Charon) as p:
        rid = p.arm(type="XFRM_MSG_NEWPOLICY", action="drop", netns="left")
        r = p.left.initiate(timeout=1)
        assert "initiate completed successfully" not in r.stdout
        assert _wait(lambda: "adding policy 192.0.2.2/32 === 192.0.2.1/32 in " in p.left.logtext())
        assert p.hits(rid) == 1
        time.sleep(1)                                   # and nothing happens after it
        knl = [ln for ln in p.left.logtext().splitlines() if "[KNL]" in ln or "[CHD]" in ln]
        assert re.search(r"\[KNL\] adding policy 192\.0\.2\.2/32 === 192\.0\.2\.1/32 in ", knl[-1]), knl[-3:]
        assert [pol["dir"] for pol in p.kp.spd("left")] == [0]       # applied, never ACKed
        assert len(p.kp.sad("left")) == 2
        # SIGTERM is received, but the shutdown waits for the blocked thread
        p.left.proc.send_signal(signal.SIGTERM)
        assert _wait(lambda: "[DMN] SIGTERM received, shutting down" in p.left.logtext(), 3)
        time.sleep(1)
        assert p.left.proc.poll() is None
        p.kill(p.left)


def test_charon_retransmits_a_request_whose_ack_was_lost(tmp_path):
    """With ``kernel-netlink { timeout, retries }`` set, charon sends the NEWPOLICY again; the
    kernel has it already (EEXIST), so charon updates it and the CHILD_SA comes up."""
    with Pair(tmp_path, charon.Charon, knl="      timeout = 500\n      retries = 2") as p:
        rid = p.arm(type="XFRM_MSG_NEWPOLICY", action="drop", netns="left")
        t0 = time.monotonic()
        r = p.left.initiate(timeout=10)
        assert "initiate completed successfully" in r.stdout, r.stdout
        assert 0.5 <= time.monotonic() - t0 < 5
        assert p.hits(rid) == 1
        _lines(p.left.logtext(),
               r"\[KNL\] adding policy 192\.0\.2\.2/32 === 192\.0\.2\.1/32 in .*",
               r"\[KNL\] retransmitting Netlink request \(1/2\)",
               r"\[KNL\] policy already exists, try to update it")
        assert sorted(pol["dir"] for pol in p.kp.spd("left")) == [0, 1, 2]


@pytest.mark.parametrize("side", ["left", "right"])
def test_charon_getspi_answer_delayed(tmp_path, side):
    """GETSPI (XFRM_MSG_ALLOCSPI) answered 1.5 s late. The initiator waits before it sends
    IKE_AUTH; a responder waits inside IKE_AUTH, so the initiator retransmits it (1 s
    retransmit_timeout) and the exchange completes once the SPI arrives."""
    with Pair(tmp_path, charon.Charon) as p:
        rid = p.arm(type="XFRM_MSG_ALLOCSPI", action="delay", seconds=1.5, netns=side)
        t0 = time.monotonic()
        r = p.left.initiate(timeout=10)
        took = time.monotonic() - t0
        assert "initiate completed successfully" in r.stdout, r.stdout
        assert p.hits(rid) == 1 and 1.5 <= took < 5, took
        retransmits = re.findall(r"retransmit \d of request with message ID 1", p.left.logtext())
        assert bool(retransmits) == (side == "right"), retransmits
        assert len(p.kp.sad("left")) == len(p.kp.sad("right")) == 2


def test_charon_ignores_an_interrupted_dump_at_start(tmp_path):
    """charon's only dumps are RTM_GETLINK and RTM_GETADDR at start-up (none of XFRM). Both
    interrupted (NLM_F_DUMP_INTR on their NLMSG_DONE): charon neither logs it nor dumps
    again, and lists its interfaces and addresses as usual."""
    faults = [dict(type="any", action="dump-intr", comm="charon", count="always", netns="left")]
    with Pair(tmp_path, charon.Charon, faults=faults) as p:
        assert p.hits(1) == 2
        _lines(p.left.logtext(), r"\[KNL\] known interfaces and IP addresses:",
               r"\[KNL\]   veth-l$", r"\[KNL\]     192\.0\.2\.1$")
        assert "initiate completed successfully" in p.left.initiate().stdout
        assert p.hits(1) == 2


def test_charon_xfrm_event_socket_overrun_is_logged_and_survived(tmp_path):
    """ENOBUFS on charon's XFRM event socket (every socket of the namespace that joined a
    group overflows while the outbound NEWSA runs): charon logs it and reads on; the soft
    EXPIRE that comes later still makes it rekey (a CHILD_SA with new SPIs)."""
    with Pair(tmp_path, charon.Charon, rekey_time=600, life_time=1200) as p:
        rid = p.arm(type="XFRM_MSG_NEWSA", action="overflow", netns="left")
        assert "initiate completed successfully" in p.left.initiate().stdout
        assert p.hits(rid) == 1
        _lines(p.left.logtext(), r"\[KNL\] unable to receive from XFRM event socket: "
                                 r"No buffer space available \(105\)")
        before = {s["spi"] for s in p.kp.sad("left")}
        soft = p.kp.sad("left")[0]["lft"]["soft_add_expires_seconds"]
        p.kp.advance(soft + 2)
        assert _wait(lambda: len({s["spi"] for s in p.kp.sad("left")} - before) == 2, timeout=15)
        _lines(p.left.logtext(), r"\[KNL\] creating rekey job for CHILD_SA ESP/0x[0-9a-f]{8}/192\.0\.2\.2")


def test_charon_rt_event_socket_overrun_loses_the_address_for_good(tmp_path):
    """ENOBUFS on charon's rtnetlink event socket while an address is added: charon logs it
    and does not dump the addresses again — the lost address never "appears"; the next one
    does."""
    with Pair(tmp_path, charon.Charon) as p:
        _add_two_addresses_first_lost(p)
        assert _wait(lambda: "192.0.2.11 appeared on veth-l" in p.left.logtext())
        log = p.left.logtext()
        _lines(log, r"\[KNL\] unable to receive from RT event socket No buffer space available \(105\)")
        assert "192.0.2.10 appeared" not in log


# -- libreswan pluto 4.10 ---------------------------------------------------------------------

@pytest.mark.parametrize("errno,extack,text", [
    ("ENOMEM", None, r"Cannot allocate memory \(errno 12\)"),
    ("EINVAL", "xfrmd fault: SA refused", r"Invalid argument \(errno 22\)"),
])
def test_pluto_newsa_refused(tmp_path, errno, extack, text):
    """pluto's NEWSA (the outbound SA) refused: pluto logs the errno (it never sets
    NETLINK_EXT_ACK, so no extack reaches it), tears
    down the Child SA and the IKE SA *without* telling the peer, and revives the connection
    at once with a new IKE SA. The peer keeps the abandoned Child SA's pair beside the new
    one."""
    with Pair(tmp_path, pluto.Pluto) as p:
        rid = p.arm(type="XFRM_MSG_NEWSA", action="fail", errno=errno, extack=extack, netns="left")
        p.left.initiate(timeout=10)
        assert p.hits(rid) == 1
        assert _wait(lambda: "initiator established Child SA using #3" in p.left.logtext())
        assert _wait(lambda: len(p.kp.sad("left")) == 2 and len(p.kp.sad("right")) == 4)
        log = p.left.logtext()
        _lines(log,
               r'ERROR: "peer" #2: netlink response for Add SA esp\.[0-9a-f]+@192\.0\.2\.2: ' + text,
               r'"peer" #2: setup_half_ipsec_sa\(\) hit fail:',
               r'"peer" #2: CHILD SA encountered fatal error: INVALID_SYNTAX',
               r'"peer" #1: deleting state \(STATE_V2_ESTABLISHED_IKE_SA\) aged .* and NOT sending notification',
               r'"peer" #1: deleting IKE SA but connection is supposed to remain up; schedule EVENT_REVIVE_CONNS',
               r'"peer" #4: initiator established Child SA using #3')
        assert "xfrmd fault" not in log and _ext_ack(p, "left") == {False}
        left = {s["spi"] for s in p.kp.sad("left")}
        assert left < {s["spi"] for s in p.kp.sad("right")}


def test_pluto_updpolicy_ack_lost_blocks_the_daemon(tmp_path):
    """pluto is one thread and waits for every netlink answer: the ACK of its first
    UPDPOLICY never comes, and the whole daemon stops (whack gets no answer, SIGTERM is not
    acted on)."""
    with Pair(tmp_path, pluto.Pluto) as p:
        rid = p.arm(type="XFRM_MSG_UPDPOLICY", action="drop", netns="left")
        with pytest.raises(subprocess.TimeoutExpired):
            p.left.initiate(timeout=2)
        assert p.hits(rid) == 1 and p.left.proc.poll() is None
        assert _wait(lambda: p.left.logtext().rstrip().endswith("| xfrm: sendrecv_xfrm_msg() sending 25"))
        last = p.left.logtext().rstrip().splitlines()[-1]
        p.left.proc.send_signal(signal.SIGTERM)      # handled only by the blocked loop
        time.sleep(1)
        assert p.left.proc.poll() is None and p.left.logtext().rstrip().splitlines()[-1] == last
        p.kill(p.left)


def test_pluto_getspi_answer_delayed(tmp_path):
    """GETSPI answered 1 s late: pluto (one thread) sends its IKE_AUTH request 1 s after
    IKE_SA_INIT, and the Child SA comes up."""
    with Pair(tmp_path, pluto.Pluto) as p:
        rid = p.arm(type="XFRM_MSG_ALLOCSPI", action="delay", seconds=1, netns="left")
        r = p.left.initiate(timeout=15)
        assert "initiator established Child SA" in r.stdout, r.stdout
        assert p.hits(rid) == 1
        init, auth = (re.search(r"^\w+ +\d+ ([\d:.]+): \"peer\" #1: sent " + m, p.left.logtext(), re.M)
                      for m in ("IKE_SA_INIT request", "IKE_AUTH request"))
        secs = lambda m: sum(float(x) * f for x, f in zip(m.group(1).split(":"), (3600, 60, 1)))
        assert 1.0 <= secs(auth) - secs(init) < 3.0


def test_pluto_rt_event_socket_overrun_loses_the_address(tmp_path):
    """ENOBUFS on pluto's rtnetlink event socket while an address is added: the same ERROR
    line; the lost address is never seen, the next one is."""
    with Pair(tmp_path, pluto.Pluto) as p:
        _add_two_addresses_first_lost(p)
        assert _wait(lambda: "XFRM RTM_NEWADDR 192.0.2.11 IFA_LOCAL" in p.left.logtext())
        log = p.left.logtext()
        _lines(log, r"ERROR: kernel: recvfrom\(\) failed in netlink_get: "
                    r"No buffer space available \(errno 105\)")
        assert "RTM_NEWADDR 192.0.2.10" not in log


def test_pluto_event_socket_overrun_is_logged_and_has_no_dump_to_interrupt(tmp_path):
    """ENOBUFS on pluto's XFRM event socket: one ERROR line, and pluto goes on. pluto sends
    no dump request at all (start-up or Child SA set-up), so there is no dump to
    interrupt: a dump-intr rule for it never fires."""
    faults = [dict(type="any", action="dump-intr", comm="pluto", count="always")]
    with Pair(tmp_path, pluto.Pluto, faults=faults) as p:
        rid = p.arm(type="XFRM_MSG_NEWSA", action="overflow", netns="left")
        assert "initiator established Child SA" in p.left.initiate(timeout=10).stdout
        assert p.hits(rid) == 1
        assert _wait(lambda: "No buffer space" in p.left.logtext(), timeout=3)
        _lines(p.left.logtext(), r"ERROR: kernel: recvfrom\(\) failed in netlink_get: "
                                 r"No buffer space available \(errno 105\)")
        assert p.hits(1) == 0


# -- the newer versions: strongSwan charon 6.0.1 and libreswan pluto 5.2 (trixie userlands) --

def test_charon6_logs_the_extack_of_a_refused_newsa(tmp_path):
    """charon 6.0.1 sets NETLINK_EXT_ACK on its request socket and logs the kernel's text in
    place of the errno's; otherwise it reacts as 5.9.8 (CHILD_SA deleted, IKE_SA kept)."""
    require_userland("trixie-strongswan")
    with Pair(tmp_path, charon.Charon, userland="trixie-strongswan") as p:
        rid = p.arm(type="XFRM_MSG_NEWSA", action="fail", errno="EINVAL",
                    extack="xfrmd fault: SA refused", netns="left")
        assert "initiate completed successfully" not in p.left.initiate(timeout=5).stdout
        assert p.hits(rid) == 1 and True in _ext_ack(p, "left")
        _lines(p.left.logtext(), r"\[KNL\] received netlink error: xfrmd fault: SA refused \(22\)",
               r"\[KNL\] unable to add SAD entry with SPI [0-9a-f]{8} \(FAILED\)",
               r"\[IKE\] failed to establish CHILD_SA, keeping IKE_SA")
        assert _wait(lambda: p.kp.sad("left") == [] and p.kp.sad("right") == [])


def test_charon6_blocks_on_a_lost_newpolicy_ack_and_ignores_interrupted_dumps(tmp_path):
    """charon 6.0.1 still waits for ever for a lost ACK (kernel-netlink's timeout is 0 by
    default); its three start-up dumps (RTM_GETLINK on two sockets, RTM_GETADDR), all
    interrupted, go unremarked."""
    require_userland("trixie-strongswan")
    faults = [dict(type="any", action="dump-intr", comm="charon", count="always", netns="left")]
    with Pair(tmp_path, charon.Charon, faults=faults, userland="trixie-strongswan") as p:
        assert p.hits(1) == 3
        assert "interrupt" not in p.left.logtext().lower()
        rid = p.arm(type="XFRM_MSG_NEWPOLICY", action="drop", netns="left")
        assert "initiate completed successfully" not in p.left.initiate(timeout=1).stdout
        assert _wait(lambda: "adding policy 192.0.2.2/32 === 192.0.2.1/32 in " in p.left.logtext())
        assert p.hits(rid) == 1
        time.sleep(1)
        knl = [ln for ln in p.left.logtext().splitlines() if "[KNL]" in ln or "[CHD]" in ln]
        assert "adding policy 192.0.2.2/32 === 192.0.2.1/32 in " in knl[-1], knl[-3:]
        p.kill(p.left)


def test_pluto5_logs_the_extack_tells_the_peer_and_revives(tmp_path):
    """pluto 5.2 sets NETLINK_EXT_ACK and logs the text on a line of its own; unlike 4.10 it
    tells the peer (INFORMATIONAL delete of the larval Child SA), so no stale pair remains
    once the revived connection is up."""
    require_userland("trixie-libreswan")
    with Pair(tmp_path, pluto.Pluto, userland="trixie-libreswan") as p:
        rid = p.arm(type="XFRM_MSG_NEWSA", action="fail", errno="EINVAL",
                    extack="xfrmd fault: SA refused", netns="left")
        p.left.initiate(timeout=10)
        assert p.hits(rid) == 1 and True in _ext_ack(p, "left")
        assert _wait(lambda: len(p.kp.sad("left")) == 2 and len(p.kp.sad("right")) == 2)
        assert {s["spi"] for s in p.kp.sad("left")} == {s["spi"] for s in p.kp.sad("right")}
        _lines(p.left.logtext(),
               r'ERROR: "peer" #2: netlink response for Add SA esp\.[0-9a-f]+@192\.0\.2\.2: '
               r'Invalid argument \(errno 22\)',
               r'"peer" #2: netlink ext_ack: xfrmd fault: SA refused$',
               r'"peer" #2: CHILD SA failed: TEMPORARY_FAILURE',
               r'"peer" #2: sent INFORMATIONAL request to delete larval Child SA using IKE SA #1',
               r'"peer" #2: connection is supposed to remain up; revival attempt 1 scheduled')


def test_pluto5_blocks_on_a_lost_updpolicy_ack(tmp_path):
    """pluto 5.2, like 4.10, waits for ever for the ACK of its first UPDPOLICY."""
    require_userland("trixie-libreswan")
    with Pair(tmp_path, pluto.Pluto, userland="trixie-libreswan") as p:
        rid = p.arm(type="XFRM_MSG_UPDPOLICY", action="drop", netns="left")
        with pytest.raises(subprocess.TimeoutExpired):
            p.left.initiate(timeout=2)
        assert p.hits(rid) == 1 and p.left.proc.poll() is None
        blocked = "| sendrecv_xfrm_msg() sending 25 policy IPv4"
        assert _wait(lambda: open(p.left.log).read().rstrip().endswith(blocked))
        time.sleep(0.5)
        assert open(p.left.log).read().rstrip().endswith(blocked)
        p.kill(p.left)
