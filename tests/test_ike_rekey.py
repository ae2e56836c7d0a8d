"""Rekey and expiry of CHILD_SAs with unmodified IKE daemons over xfrmd, in real time.

Who drives a rekey differs between the daemons, and these tests pin it down:

* libreswan pluto 4.10 installs its SAs with no add-time lifetimes (soft/hard_add_expires
  = 0), so the kernel never sends it a time EXPIRE: pluto rekeys on its own timer, at
  ``salifetime - rekeymargin`` (plus up to ``rekeyfuzz``) as the original initiator and at
  ``salifetime - rekeymargin/2`` as the original responder, which by then finds the Child SA
  superseded and deletes it. With ``rekey=no`` the same timer fires at ``salifetime`` and
  deletes the Child SA.
* strongSwan charon 5.9.8 gives the kernel ``rekey_time`` (minus jitter) as the soft and
  ``life_time`` as the hard add-time lifetime and rekeys when the kernel's soft
  XFRM_MSG_EXPIRE arrives.

Every wait is bounded; the daemons are stopped and the namespaces removed whatever happens;
a failure prints both daemons' logs and the emulated kernels' netlink conversation."""
from __future__ import annotations

import os
import time

from xfrmd.ike import charon, pluto
from xfrmd.ike.pair import KernelPair

from .conftest import require

HARD_NEVER = 2 ** 63         # pluto's "no limit" for bytes and packets (ipsec-max-bytes default)


def _require(daemons):
    require(os.geteuid() == 0, "needs root for network namespaces")
    if pluto.Pluto in daemons:
        require(pluto.available(), "needs the extracted libreswan (tools/test-all.sh)")
    if charon.Charon in daemons:
        require(charon.available(), "needs strongswan-charon and strongswan-swanctl")


def _wait(cond, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    return cond()


def _conf(**kv) -> str:
    """ipsec.conf lines for the ``peer`` conn: _conf(salifetime="6s", rekeyfuzz="0%")."""
    return "".join(f"\t{k.replace('_', '-')}={v}\n" for k, v in kv.items())


def _spis(sas):
    return sorted((s["src"], s["dst"], s["spi"]) for s in sas)


def _keys(sas):
    return sorted((s["spi"], s["algs"].get("enc"), s["algs"].get("auth"), s["algs"].get("aead"))
                  for s in sas)


def _pair_policies(kp, side):
    """The policies of the conn itself (not pluto's ICMPv6 neighbour-discovery holes)."""
    return sorted((p["src"], p["dst"], p["dir"], p["index"]) for p in kp.spd(side)
                  if p["src"].startswith("192.0.2."))


class Run:
    """A kernel pair with ``left`` (the initiator) and ``right`` started; both stopped and
    the namespaces removed on the way out. ``left``/``right``: (class, keyword arguments)."""

    def __init__(self, tmp_path, left, right):
        _require({left[0], right[0]})
        self.tmp, self.spec = str(tmp_path), {"left": left, "right": right}
        self.kp = KernelPair()
        self.left = self.right = None

    def __enter__(self):
        self.kp.__enter__()
        try:
            for side in ("right", "left"):           # the responder first
                cls, kw = self.spec[side]
                d = cls(self.kp.real, side, self.tmp, self.kp.env(side), **kw)
                setattr(self, side, d)
                d.start()
        except BaseException as e:
            self.__exit__(type(e), e, e.__traceback__)
            raise
        return self

    def __exit__(self, *exc):
        try:
            for d in (self.left, self.right):
                if d is not None:
                    d.stop()
            if exc[0] is not None:
                for d in (self.left, self.right):
                    if d is not None:
                        text = d.logtext()
                        if isinstance(d, pluto.Pluto):     # plutodebug=all: the plain lines
                            text = "\n".join(x for x in text.splitlines() if ": | " not in x)
                        print(f"---- {type(d).__name__} {d.side} log ----\n{text[-8000:]}")
        finally:
            self.kp.__exit__(*exc)

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
