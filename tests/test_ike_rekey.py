"""Rekey and expiry of CHILD_SAs with unmodified IKE daemons over xfrmd, in real time.

Who drives a rekey differs between the daemons, and these tests pin it down:

* libreswan pluto 4.10 installs its SAs with no add-time lifetimes (soft/hard_add_expires
  = 0), so the kernel never sends it a time EXPIRE: pluto rekeys on its own timer, at
  ``salifetime - rekeymargin`` (the margin grown by up to ``rekeyfuzz`` per cent) as the
  original initiator and at ``salifetime - rekeymargin/2`` as the original responder. The
  rekeying side deletes the replaced Child SA 1 s after the rekey (EXPIRE_OLD_SA_DELAY);
  a responder whose timer comes first finds it superseded and deletes it itself. With
  ``rekey=no`` the same timer fires at ``salifetime`` and deletes the Child SA.
* strongSwan charon 5.9.8 gives the kernel ``rekey_time`` (minus jitter) as the soft and
  ``life_time`` as the hard add-time lifetime and rekeys when the kernel's soft
  XFRM_MSG_EXPIRE arrives.
* Byte and packet limits (pluto's ipsec-max-bytes/-packets, charon's rekey_/life_bytes)
  are the kernel's to enforce, so there both daemons react to EXPIREs: emulated traffic
  (``kp.xmit``, ``xfrmd ctl xmit``) drives them.

Every wait is bounded; the daemons are stopped and the namespaces removed whatever happens;
a failure prints both daemons' logs and the emulated kernels' netlink conversation."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from netlink_codec import xfrm as X
from xfrmd.ike import charon, pluto
from xfrmd.ike.pair import KernelPair

from . import ike_helpers
from .ike_helpers import require_charon, require_pluto, require_root, wait
from .ike_helpers import spis as _spis

HARD_NEVER = 2 ** 63         # pluto's "no limit" for bytes and packets (ipsec-max-bytes default)


def _require(daemons):
    require_root()
    if pluto.Pluto in daemons:
        require_pluto()
    if charon.Charon in daemons:
        require_charon()


def _wait(cond, timeout):
    return wait(cond, timeout, interval=0.05)


def _conf(**kv) -> str:
    """ipsec.conf lines for the ``peer`` conn: _conf(salifetime="6s", rekeyfuzz="0%")."""
    return "".join(f"\t{k.replace('_', '-')}={v}\n" for k, v in kv.items())


def _keys(sas):
    return sorted((s["spi"], s["algs"].get("enc"), s["algs"].get("auth"), s["algs"].get("aead"))
                  for s in sas)


def _pair_policies(kp, side):
    """The policies of the conn itself (not pluto's ICMPv6 neighbour-discovery holes)."""
    return sorted((p["src"], p["dst"], p["dir"], p["index"]) for p in kp.spd(side)
                  if p["src"].startswith("192.0.2."))


def _daemon(cls, kw):
    return lambda kp, side, tmp: cls(kp.real, side, tmp, kp.env(side), **kw)


class Run(ike_helpers.Pair):
    """A kernel pair with ``left`` (the initiator) and ``right`` started; both stopped and
    the namespaces removed on the way out. ``left``/``right``: (class, keyword arguments)."""

    def __init__(self, tmp_path, left, right):
        _require({left[0], right[0]})
        super().__init__(tmp_path, _daemon(*left), _daemon(*right))

    def log_tail(self, d) -> str:
        text = d.logtext()
        if isinstance(d, pluto.Pluto):     # plutodebug=all: the plain lines
            text = "\n".join(x for x in text.splitlines() if ": | " not in x)
        return f"---- {type(d).__name__} {d.side} log ----\n{text[-8000:]}"

    def established(self):
        if isinstance(self.left, pluto.Pluto):
            r = self.left.initiate()
            assert "established Child SA" in r.stdout, r.stdout
        else:
            r = self.left.initiate()
            assert "initiate completed successfully" in r.stdout, r.stdout
        # the responder installs its outbound SA after its answer left: wait for both
        both = _wait(lambda: len(self.kp.sad("left")) == 2 and
                     _spis(self.kp.sad("left")) == _spis(self.kp.sad("right")), timeout=10)
        assert both, (self.kp.sad("left"), self.kp.sad("right"))
        return time.monotonic(), _spis(self.kp.sad("left"))

    def rekeyed(self, old, since, timeout):
        """Wait until both SADs hold exactly one new pair, the same SPIs with the same keys,
        none of them from ``old``; returns (seconds after ``since``: when the first new SA
        showed, when each side held only the new pair; the SAs)."""
        seen = {}

        def done():
            sl, sr = self.kp.sad("left"), self.kp.sad("right")
            now = time.monotonic() - since
            if set(_spis(sl)) - set(old):
                seen.setdefault("first_new", now)
            for side, sas in (("left", sl), ("right", sr)):
                if len(sas) == 2 and set(_spis(sas)).isdisjoint(old):
                    seen.setdefault(side, now)
            if (len(sl) == 2 and _spis(sl) == _spis(sr) and set(_spis(sl)).isdisjoint(old)
                    and _keys(sl) == _keys(sr)):
                return sl
            return None
        sas = _wait(done, timeout)
        assert sas, ("no clean rekey", old, self.kp.sad("left"), self.kp.sad("right"))
        return seen, sas


# --- pluto: its own timers --------------------------------------------------------------

REKEY = _conf(salifetime="8s", rekeymargin="4s", rekeyfuzz="0%", ikelifetime="1h")


def test_pluto_pair_rekeys_the_child_sa_on_its_own_timer(tmp_path):
    """salifetime=8s, rekeymargin=4s, rekeyfuzz=0%: the initiator rekeys 4 s after the
    Child SA is up, without any EXPIRE from the kernel (none is sent: the SAs carry no
    add-time lifetime, and moving the emulated clock a day on changes nothing), and deletes
    the replaced pair 1 s later (EXPIRE_OLD_SA_DELAY) with an INFORMATIONAL DELETE, before
    the responder's own timer (8 - 4/2 = 6 s) would. The policies stay as they were."""
    with Run(tmp_path, (pluto.Pluto, {"extra": REKEY}), (pluto.Pluto, {"extra": REKEY})) as r:
        kp = r.kp
        t_up, old = r.established()
        for side in ("left", "right"):
            for sa in kp.sad(side):
                lft = sa["lft"]
                assert lft["soft_add_expires_seconds"] == lft["hard_add_expires_seconds"] == 0
                assert lft["hard_byte_limit"] == lft["hard_packet_limit"] == HARD_NEVER
                # the randomised soft volume limit: 25 % (initiator) / 50 % (responder)
                # of 2^63, with up to 12 % fuzz
                assert HARD_NEVER // 8 < lft["soft_byte_limit"] < HARD_NEVER
        pols = {s: _pair_policies(kp, s) for s in ("left", "right")}
        assert sorted(p[2] for p in pols["left"]) == [0, 1, 2]
        kp.advance(86400)
        assert _spis(kp.sad("left")) == old and _spis(kp.sad("right")) == old
        seen, new = r.rekeyed(old, since=t_up, timeout=20)
        assert 3.0 < seen["first_new"] < 8.0    # salifetime - rekeymargin = 4 s, before 8 s
        assert kp.expires("left") == [] and kp.expires("right") == []
        assert {s: _pair_policies(kp, s) for s in ("left", "right")} == pols
        left_log, right_log = r.left.logtext(), r.right.logtext()
        assert '"peer" #3: initiating rekey to replace Child SA #2' in left_log
        assert "initiator rekeyed Child SA #2 using #1" in left_log
        assert "responder rekeyed Child SA #2 using #1" in right_log
        assert '"peer" #2: deleting established Child SA using IKE SA #1' in left_log
        assert "deleting established Child SA" not in right_log


def test_pluto_rekey_no_deletes_the_child_sa_when_salifetime_ends(tmp_path):
    """rekey=no, salifetime=3s: soft and hard limits are the same (no soft margin), and at
    3 s pluto's own expiry timer deletes the Child SA (INFORMATIONAL DELETE; the peer
    deletes its half). Both SADs end empty and stay so; pluto turns its outbound policy
    back into the conn's template policy (UPDPOLICY, same index) and deletes in and fwd.
    The IKE SA stays up."""
    conf = _conf(salifetime="3s", rekey="no", ikelifetime="1h")
    with Run(tmp_path, (pluto.Pluto, {"extra": conf}), (pluto.Pluto, {"extra": conf})) as r:
        kp = r.kp
        t_up, old = r.established()
        for sa in kp.sad("left") + kp.sad("right"):
            lft = sa["lft"]
            assert lft["soft_add_expires_seconds"] == lft["hard_add_expires_seconds"] == 0
            assert lft["soft_byte_limit"] == lft["hard_byte_limit"] == HARD_NEVER
        pols = _pair_policies(kp, "left")
        assert _wait(lambda: not kp.sad("left") and not kp.sad("right"), timeout=15)
        gone = time.monotonic() - t_up
        assert 2.0 < gone < 10.0, gone
        time.sleep(1.0)
        assert kp.sad("left") == [] and kp.sad("right") == []
        assert kp.expires("left") == [] and kp.expires("right") == []
        for side in ("left", "right"):
            assert [p for p in _pair_policies(kp, side) if p[2] != 1] == []
        assert _pair_policies(kp, "left") == [p for p in pols if p[2] == 1]
        logs = r.left.logtext() + r.right.logtext()
        assert '"peer" #2: deleting established Child SA using IKE SA #1' in logs
        assert "rekey" not in "\n".join(x for x in logs.splitlines()
                                        if '"peer" #' in x and ": | " not in x)
        assert "STATE_V2_ESTABLISHED_IKE_SA" in r.left.whack("--status").stdout


def test_pluto_rekeys_against_charon(tmp_path):
    """pluto (salifetime=16s, rekeymargin=8s) initiates to charon 5.9.8 (no rekey_time or
    life_time: its SAs carry no lifetime either): pluto's timer rekeys at 8 s, charon
    answers the CREATE_CHILD_SA and installs the new pair, pluto deletes the old one 1 s
    later; charon deletes its old outbound SA at once but keeps the old inbound one 5 s
    longer (charon.delete_rekeyed_delay). pluto's rekey proposes PFS (the IKE SA's
    MODP2048): charon accepts it only with a DH group in esp_proposals, without one it
    answers NO_PROPOSAL_CHOSEN and the Child SA dies at salifetime."""
    conf = _conf(salifetime="16s", rekeymargin="8s", rekeyfuzz="0%", ikelifetime="1h")
    with Run(tmp_path, (pluto.Pluto, {"extra": conf}),
             (charon.Charon, {"esp_proposals": "aes128-sha256-modp2048"})) as r:
        kp = r.kp
        t_up, old = r.established()
        assert all(sa["lft"]["soft_add_expires_seconds"] == 0 for sa in kp.sad("right"))
        pols = {s: _pair_policies(kp, s) for s in ("left", "right")}
        seen, new = r.rekeyed(old, since=t_up, timeout=25)
        assert 7.0 < seen["first_new"] < 16.0
        assert seen["right"] - seen["left"] > 3.0           # charon's old inbound SA lingers
        assert kp.expires("left") == [] and kp.expires("right") == []
        assert {s: _pair_policies(kp, s) for s in ("left", "right")} == pols
        assert "initiator rekeyed Child SA #2 using #1" in r.left.logtext()
        clog = r.right.logtext()
        assert "parsed CREATE_CHILD_SA request 2 [ N(REKEY_SA) SA No KE TSi TSr ]" in clog
        assert "received DELETE for ESP CHILD_SA with SPI" in clog
        assert "INSTALLED" in r.right.list_sas()


def test_charon_rekeys_against_pluto_on_the_kernels_soft_expire(tmp_path):
    """charon 5.9.8 (rekey_time=5s, life_time=6s, rand_time=0s: hard add-time expiry 6 s on
    both SAs, soft 5 s on the inbound SA only — without jitter 5.9.8 leaves the outbound
    SA without a soft limit, so one EXPIRE, not two, starts the rekey)
    initiates to pluto (salifetime default 8h). The emulated kernel's clock runs in real
    time: its soft XFRM_MSG_EXPIRE reaches charon, charon rekeys (CREATE_CHILD_SA), pluto
    as responder installs the new pair and charon deletes the old — kernel-driven, unlike
    pluto's own timer. pluto (pfs=yes by default) wants a KE in the CREATE_CHILD_SA: charon
    must list a DH group in esp_proposals, otherwise pluto answers NO_PROPOSAL_CHOSEN,
    charon retries in 15 s and the hard expiry at 6 s takes the Child SA down."""
    with Run(tmp_path, (charon.Charon, {"rekey_time": 5, "life_time": 6,
                                         "esp_proposals": "aes128-sha256-modp2048",
                                         "limits": {"rand_time": "0s"}}),
             (pluto.Pluto, {})) as r:
        kp = r.kp
        t_up, old = r.established()
        inbound = [sa["spi"] for sa in kp.sad("left") if sa["dst"] == "192.0.2.1"]
        assert {(sa["dst"], sa["lft"]["soft_add_expires_seconds"],
                 sa["lft"]["hard_add_expires_seconds"]) for sa in kp.sad("left")} == {
            ("192.0.2.1", 5, 6), ("192.0.2.2", 0, 6)}
        for sa in kp.sad("right"):
            assert sa["lft"]["soft_add_expires_seconds"] == 0
        seen, new = r.rekeyed(old, since=t_up, timeout=20)
        assert 4.0 < seen["first_new"] < 6.0
        # the soft EXPIRE started the rekey; charon keeps the old inbound SA for
        # delete_rekeyed_delay (5 s), past its hard lifetime: the kernel's hard EXPIRE ends it
        assert [(e["spi"], e["hard"]) for e in kp.expires("left")] == [
            (inbound[0], False), (inbound[0], True)]
        assert kp.expires("right") == []
        assert "rekeying CHILD_SA" in r.left.logtext() or "rekeying" in r.left.logtext()
        assert "responder rekeyed Child SA #2 using #1" in r.right.logtext()


# --- kernel-driven: byte and packet limits reached by emulated traffic -------------------
#
# ``kp.xmit`` sends UDP packets through the emulated output path (xfrm_output_one): the
# kernel checks the limits before it counts a packet (xfrm_state_check_expire), so the
# packet after the one that reached a limit raises the EXPIRE — a soft one is sent at once
# and the packet goes out, a hard one drops that packet (XfrmOutStateExpired) and the
# state's timer deletes it and sends the hard EXPIRE.

PAYLOAD = 1000
WIRE = PAYLOAD + 28                  # what curlft.bytes counts per packet: IPv4 + UDP + data


def _out_sa(kp, side):
    me = kp.real.addr[side]
    [sa] = [s for s in kp.sad(side) if s["src"] == me]
    return sa


def _ceil(a, b):
    return -(-a // b)


def _plain_log(d) -> str:
    return "\n".join(x for x in d.logtext().splitlines() if ": | " not in x)


def _new_child_after_acquire(kp, old):
    """After an ACQUIRE: pluto's new Child SA in both SADs. Beside it the kernel's larval
    state stays (spi 0, reqid 0, transport: pluto's outbound trap template is a wildcard
    ``proto esp reqid 0 mode transport``, and its NEWSA carries reqid 16389, tunnel mode
    and no km.seq, so xfrm_state_add finds no larval state to replace) until
    xfrm_acq_expires (30 s)."""
    real = lambda side: [s for s in kp.sad(side) if s["spi"]]
    assert _wait(lambda: len(real("left")) == 2 and _spis(real("left")) == _spis(real("right")),
                 timeout=10), (kp.sad("left"), kp.sad("right"))
    assert set(_spis(real("left"))).isdisjoint(old)
    assert _keys(real("left")) == _keys(real("right"))
    [larval] = [s for s in kp.sad("left") if not s["spi"]]
    assert (larval["src"], larval["dst"], larval["reqid"], larval["mode"]) == (
        "192.0.2.1", "192.0.2.2", 0, 0)
    assert [s for s in kp.sad("right") if not s["spi"]] == []


@pytest.mark.parametrize("unit", ["bytes", "packets"])
def test_pluto_rekeys_on_the_kernels_soft_expire(tmp_path, unit):
    """ipsec-max-bytes=100000 (or ipsec-max-packets=100): pluto gives the kernel that as
    the hard limit and a randomised soft one — the original initiator a quarter of it plus
    a random fuzz, the responder a half minus one (plutodebug logs "hard-limit= soft-limit=
    softer-limit= fuzz= actual-limit="); seen: up to an eighth. Traffic up to the soft limit changes nothing;
    the next packet makes the kernel send a soft EXPIRE, and pluto 4.10 rekeys at once
    ("received soft EXPIRE for outbound SPI … rekey=yes; replacing"), the same rekey as its
    timer's: new SPIs with the same keys on both sides, the old pair deleted 1 s later."""
    hard = 100000 if unit == "bytes" else 100
    key = "ipsec_max_bytes" if unit == "bytes" else "ipsec_max_packets"
    conf = _conf(**{key: hard}, ikelifetime="1h")
    with Run(tmp_path, (pluto.Pluto, {"extra": conf}), (pluto.Pluto, {"extra": conf})) as r:
        kp = r.kp
        t_up, old = r.established()
        limit = "byte_limit" if unit == "bytes" else "packet_limit"
        for side, lo, hi in (("left", 0.25, 0.375), ("right", 0.375, 0.5)):
            for sa in kp.sad(side):
                assert sa["lft"]["hard_" + limit] == hard
                assert lo * hard <= sa["lft"]["soft_" + limit] <= hi * hard, (side, sa["lft"])
                assert sa["lft"]["soft_add_expires_seconds"] == 0
        out = _out_sa(kp, "left")
        soft = out["lft"]["soft_" + limit]
        n = _ceil(soft, WIRE) if unit == "bytes" else soft
        pols = {s: _pair_policies(kp, s) for s in ("left", "right")}
        res = kp.xmit("left", count=n, size=PAYLOAD)
        assert (res["sent"], res["dropped"]) == (n, 0)
        time.sleep(0.3)
        assert kp.expires("left") == [] and _spis(kp.sad("left")) == old
        res = kp.xmit("left", count=1, size=PAYLOAD)
        assert (res["sent"], res["dropped"]) == (1, 0)          # a soft limit drops nothing
        assert [(e["spi"], e["hard"]) for e in kp.expires("left")] == [(out["spi"], False)]
        seen, new = r.rekeyed(old, since=time.monotonic(), timeout=15)
        assert seen["first_new"] < 3.0                          # at once, not on a timer
        log = _plain_log(r.left)
        assert (f'"peer" #2: received soft EXPIRE for outbound SPI {out["spi"]:08x} '
                f"bytes {n * WIRE} packets {n} rekey=yes; replacing") in log
        assert '"peer" #3: initiating rekey to replace Child SA #2' in log
        assert '"peer" #2: deleting established Child SA using IKE SA #1' in log
        assert "initiating Child SA using IKE SA" not in log    # a rekey, not a new Child SA
        assert {s: _pair_policies(kp, s) for s in ("left", "right")} == pols
        # the new outbound SA carries fresh counters and a fresh soft limit
        assert kp.xmit("left", count=1, size=PAYLOAD)["sent"] == 1
        assert len(kp.expires("left")) == 1


def test_pluto_rekey_no_deletes_the_child_sa_on_the_kernels_hard_expire(tmp_path):
    """rekey=no, ipsec-max-bytes=100000: soft = hard = 100000. The packet after the limit
    is dropped (XfrmOutStateExpired), the kernel deletes the SA and sends a hard EXPIRE;
    pluto deletes the Child SA (the peer deletes its half): both SADs empty. pluto left its
    outbound policy in place as the conn's template policy, so the next packet makes the
    kernel send an ACQUIRE and pluto negotiates a new Child SA (CREATE_CHILD_SA, not a
    rekey) — traffic-driven, not a rekey."""
    conf = _conf(ipsec_max_bytes=100000, rekey="no", ikelifetime="1h")
    with Run(tmp_path, (pluto.Pluto, {"extra": conf}), (pluto.Pluto, {"extra": conf})) as r:
        kp = r.kp
        t_up, old = r.established()
        out = _out_sa(kp, "left")
        assert out["lft"]["soft_byte_limit"] == out["lft"]["hard_byte_limit"] == 100000
        n = _ceil(100000, WIRE)
        assert kp.xmit("left", count=n, size=PAYLOAD)["sent"] == n
        assert kp.expires("left") == []
        res = kp.xmit("left", count=1, size=PAYLOAD)
        assert (res["sent"], res["dropped"]) == (0, 1)
        assert res["batches"][0]["reason"] == "XfrmOutStateExpired"
        assert [(e["spi"], e["hard"]) for e in kp.expires("left")] == [(out["spi"], True)]
        assert _wait(lambda: not kp.sad("left") and not kp.sad("right"), timeout=10)
        time.sleep(1.0)
        assert kp.sad("left") == [] and kp.sad("right") == []
        log = _plain_log(r.left)
        assert (f'"peer" #2: received hard EXPIRE for outbound SPI {out["spi"]:08x} '
                f"bytes {n * WIRE} packets {n} rekey=no") in log
        assert '"peer" #2: deleting established Child SA using IKE SA #1' in log
        assert [p[2] for p in _pair_policies(kp, "left")] == [1]      # out stays, as a trap
        # the next packet: ACQUIRE, and pluto brings a new Child SA up
        res = kp.xmit("left", count=1, size=PAYLOAD)
        assert res["dropped"] == 1 and res["batches"][0].get("acquire")
        _new_child_after_acquire(kp, old)
        assert '"peer" #3: initiating Child SA using IKE SA #1' in _plain_log(r.left)


def test_pluto_soft_and_hard_expire_in_one_burst_leave_no_child_sa(tmp_path):
    """rekey=yes, ipsec-max-bytes=100000, and one burst past the hard limit: the soft
    EXPIRE ("replacing") and the hard EXPIRE ("already soft expired") reach pluto before
    its rekey runs; it deletes the Child SA on the hard one, and the queued rekey then
    finds nothing to replace ("Child SA to rekey #2 vanished abort this exchange", and
    "state transition function … had internal error"). pluto 4.10 is left with no Child
    SA until traffic meets its outbound policy again (ACQUIRE → new Child SA)."""
    conf = _conf(ipsec_max_bytes=100000, ikelifetime="1h")
    with Run(tmp_path, (pluto.Pluto, {"extra": conf}), (pluto.Pluto, {"extra": conf})) as r:
        kp = r.kp
        t_up, old = r.established()
        out = _out_sa(kp, "left")
        n = _ceil(100000, WIRE) + 1
        res = kp.xmit("left", count=n, size=PAYLOAD)
        assert (res["sent"], res["dropped"]) == (n - 1, 1)
        assert [(e["spi"], e["hard"]) for e in kp.expires("left")] == [
            (out["spi"], False), (out["spi"], True)]
        assert _wait(lambda: not kp.sad("left") and not kp.sad("right"), timeout=10)
        assert _wait(lambda: "vanished abort this exchange" in _plain_log(r.left), timeout=5)
        time.sleep(1.5)
        assert kp.sad("left") == [] and kp.sad("right") == []
        log = _plain_log(r.left)
        assert "rekey=yes; replacing" in log and "rekey=yes; already soft expired" in log
        assert "Child SA to rekey #2 vanished abort this exchange" in log
        res = kp.xmit("left", count=1, size=PAYLOAD)
        assert res["dropped"] == 1 and res["batches"][0].get("acquire")
        _new_child_after_acquire(kp, old)


def test_charon_rekeys_on_the_kernels_soft_byte_expire(tmp_path):
    """charon 5.9.8, rekey_bytes=30000, life_bytes=100000, rand_bytes=0: both SAs get the
    soft limit 30000 and the hard 100000 (unlike time, where without jitter only the
    inbound SA gets a soft limit). The packet after 30000 bytes raises the soft EXPIRE and
    charon rekeys (CHILD_REKEY); its old inbound SA lingers 5 s (delete_rekeyed_delay)."""
    lim = {"rekey_bytes": 30000, "life_bytes": 100000, "rand_bytes": 0}
    with Run(tmp_path, (charon.Charon, {"limits": lim}), (charon.Charon, {"limits": lim})) as r:
        kp = r.kp
        t_up, old = r.established()
        for sa in kp.sad("left") + kp.sad("right"):
            assert (sa["lft"]["soft_byte_limit"], sa["lft"]["hard_byte_limit"]) == (30000, 100000)
        out = _out_sa(kp, "left")
        n = _ceil(30000, WIRE)
        assert kp.xmit("left", count=n, size=PAYLOAD)["sent"] == n
        time.sleep(0.3)
        assert kp.expires("left") == []
        assert kp.xmit("left", count=1, size=PAYLOAD)["sent"] == 1
        assert [(e["spi"], e["hard"]) for e in kp.expires("left")] == [(out["spi"], False)]
        seen, new = r.rekeyed(old, since=time.monotonic(), timeout=15)
        assert seen["first_new"] < 3.0
        log = r.left.logtext()
        assert "activating CHILD_REKEY task" in log
        assert "sending DELETE for ESP CHILD_SA with SPI" in log


def test_charon_hard_byte_expire_deletes_and_recreates_the_child_sa(tmp_path):
    """charon 5.9.8, life_bytes=100000 and no rekey_bytes: rand_bytes defaults to
    life_bytes - rekey_bytes = 100000 and charon subtracts a random part of it from the
    rekey_bytes of 0 — the unsigned soft limit wraps to just under 2^64, so there is in
    effect none (the same wrap hits any rekey_bytes smaller than the default jitter). The
    packet after
    100000 bytes is dropped and the kernel's hard EXPIRE arrives; charon closes the expired
    CHILD_SA (DELETE to the peer) and at once creates a new one ("scheduling CHILD_SA
    recreate after hard expire", CREATE_CHILD_SA without REKEY_SA) — no traffic needed,
    unlike pluto."""
    lim = {"life_bytes": 100000}
    with Run(tmp_path, (charon.Charon, {"limits": lim}), (charon.Charon, {"limits": lim})) as r:
        kp = r.kp
        t_up, old = r.established()
        out = _out_sa(kp, "left")
        assert out["lft"]["hard_byte_limit"] == 100000
        assert 2 ** 64 - 100000 <= out["lft"]["soft_byte_limit"] < 2 ** 64     # wrapped
        n = _ceil(100000, WIRE)
        assert kp.xmit("left", count=n, size=PAYLOAD)["sent"] == n
        res = kp.xmit("left", count=1, size=PAYLOAD)
        assert (res["sent"], res["dropped"]) == (0, 1)
        assert [(e["spi"], e["hard"]) for e in kp.expires("left")] == [(out["spi"], True)]
        seen, new = r.rekeyed(old, since=time.monotonic(), timeout=15)
        log = r.left.logtext()
        assert "closing expired CHILD_SA ch{1}" in log
        assert "scheduling CHILD_SA recreate after hard expire" in log
        assert "CHILD_REKEY" not in log


# --- what pluto 4.10 accepts ---------------------------------------------------------------

@pytest.mark.parametrize("conf, status, logged", [
    # no lower bound: one second and a margin of nothing are taken as they are
    (_conf(salifetime="1s", rekeymargin="0s"), "ipsec_life: 1s;", None),
    (_conf(salifetime="1s", rekeymargin="0s"), "rekey_margin: 0s;", None),
    (_conf(ikelifetime="1s"), "ike_life: 1s;", None),
    # a margin not below the lifetime is cut to half of it (integer seconds)
    (_conf(salifetime="3s"), "rekey_margin: 1s;",
     "rekeymargin (540s) >= salifetime (3s); reducing rekeymargin to 1s seconds"),
    # 0 and anything above a day end as the maximum, 24 h
    (_conf(salifetime="0s"), "ipsec_life: 86400s;", None),
    (_conf(salifetime="2d"), "ipsec_life: 86400s;",
     "IPsec lifetime set to the maximum allowed 86400s"),
    (_conf(ipsec_max_bytes="1000", ipsec_max_packets="10"),
     "ipsec_max_bytes: 1000B; ipsec_max_packets: 10;", None),
    (_conf(ipsec_lifetime="5s"), "ipsec_life: 5s;", None),         # salifetime's alias
], ids=["salifetime=1s", "rekeymargin=0s", "ikelifetime=1s", "margin-cut", "salifetime=0s",
        "salifetime=2d", "max-bytes", "ipsec-lifetime"])
def test_pluto_lifetime_settings(tmp_path, conf, status, logged):
    """The lifetimes pluto 4.10 takes from ipsec.conf, as `whack --status` shows them."""
    _require({pluto.Pluto})
    with KernelPair() as kp:
        p = pluto.Pluto(kp.real, "left", str(tmp_path), kp.env("left"), extra=conf)
        try:
            p.start()
            line = [x for x in p.whack("--status").stdout.splitlines() if "ipsec_life:" in x]
            assert len(line) == 1 and status in line[0], line
            if logged:
                assert logged in _plain_log(p)
        finally:
            p.stop()


def test_pluto_ike_sa_rekey_leaves_the_kernel_alone(tmp_path):
    """ikelifetime=6s, rekeymargin=3s: pluto rekeys the IKE SA at 3 s (CREATE_CHILD_SA)
    and deletes the old one 1 s later; the Child SA moves to the new IKE SA, so the kernels
    see nothing — no SA or policy request after the Child SA was installed."""
    conf = _conf(ikelifetime="6s", salifetime="1h", rekeymargin="3s", rekeyfuzz="0%")
    with Run(tmp_path, (pluto.Pluto, {"extra": conf}), (pluto.Pluto, {"extra": conf})) as r:
        kp = r.kp
        t_up, old = r.established()
        pols = {s: _pair_policies(kp, s) for s in ("left", "right")}
        mark = sum(1 for _ in open(kp.trace_path))
        assert _wait(lambda: '"peer" #1: deleting state (STATE_V2_ESTABLISHED_IKE_SA)'
                     in _plain_log(r.left), timeout=10)
        left_log = _plain_log(r.left)
        assert '"peer" #3: initiator rekeyed IKE SA #1' in left_log
        assert "responder rekeyed IKE SA #1" in _plain_log(r.right)
        assert _spis(kp.sad("left")) == old == _spis(kp.sad("right"))
        assert {s: _pair_policies(kp, s) for s in ("left", "right")} == pols
        changes = {X.XfrmMsg.NEWSA, X.XfrmMsg.UPDSA, X.XfrmMsg.DELSA, X.XfrmMsg.NEWPOLICY,
                   X.XfrmMsg.UPDPOLICY, X.XfrmMsg.DELPOLICY, X.XfrmMsg.ALLOCSPI}
        with open(kp.trace_path) as f:
            later = [json.loads(x) for x in list(f)[mark:]]
        asked = [int.from_bytes(bytes.fromhex(m["data"])[4:6], sys.byteorder) for m in later
                 if m["dir"] == "tx" and m["proto"] == 6]
        assert not set(asked) & changes, asked


def test_charon_hard_time_expire_recreates_the_child_sa(tmp_path):
    """charon 5.9.8 with rekey_time=0, life_time=3s: no soft limit, the kernel hard-expires
    both SAs at 3 s (real time) and charon closes the CHILD_SA and recreates it at once, as
    after a hard byte expiry — the SADs are empty only for a moment. (The peer has no
    lifetime, so the left side's kernel is the one that expires.)"""
    with Run(tmp_path, (charon.Charon, {"rekey_time": 0, "life_time": 3}),
             (charon.Charon, {})) as r:
        kp = r.kp
        t_up, old = r.established()
        for sa in kp.sad("left"):
            # no soft expiry before the hard one: 0, or the time jitter's wrap (seen: 2^64-1)
            soft = sa["lft"]["soft_add_expires_seconds"]
            assert sa["lft"]["hard_add_expires_seconds"] == 3 and (soft == 0 or soft > 3)
        seen, new = r.rekeyed(old, since=t_up, timeout=10)
        assert 2.0 < seen["first_new"] < 6.0
        assert sorted((e["spi"], e["hard"]) for e in kp.expires("left")) == sorted(
            (spi, True) for _, _, spi in old)
        log = r.left.logtext()
        assert "closing expired CHILD_SA ch{1}" in log
        assert "scheduling CHILD_SA recreate after hard expire" in log


def test_a_failing_run_stops_the_daemons_removes_the_namespaces_and_explains_itself(
        tmp_path, capsys):
    """What every test above relies on: an assertion inside ``Run`` still stops both daemons,
    removes both real namespaces, and prints the daemons' logs and the netlink trace."""
    with pytest.raises(AssertionError, match="deliberate"):
        with Run(tmp_path, (pluto.Pluto, {}), (pluto.Pluto, {})) as r:
            procs, names = (r.left.proc, r.right.proc), set(r.kp.real.ns.values())
            r.established()
            assert False, "deliberate"
    assert all(p.poll() is not None for p in procs)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not names & {line.split()[0] for line in listed.splitlines() if line.strip()}
    out, err = capsys.readouterr()
    assert "---- Pluto left log ----" in out and "---- Pluto right log ----" in out
    assert "initiator established Child SA" in out
    assert "the kernel pair's netlink conversation" in err and "XFRM_MSG_NEWSA" in err
