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
        none of them from ``old``; returns (when the first new SA was seen, in seconds after
        ``since``; the SAs)."""
        first = [None]
        t0 = since

        def done():
            sl, sr = self.kp.sad("left"), self.kp.sad("right")
            if first[0] is None and set(_spis(sl)) - set(old):
                first[0] = time.monotonic() - t0
            if (len(sl) == 2 and _spis(sl) == _spis(sr) and set(_spis(sl)).isdisjoint(old)
                    and _keys(sl) == _keys(sr)):
                return sl
            return None
        sas = _wait(done, timeout)
        assert sas, ("no clean rekey", old, self.kp.sad("left"), self.kp.sad("right"))
        return first[0], sas


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
        after, new = r.rekeyed(old, since=t_up, timeout=20)
        assert 3.0 < after < 8.0          # salifetime - rekeymargin = 4 s, before the 8 s
        assert kp.expires("left") == [] and kp.expires("right") == []
        assert {s: _pair_policies(kp, s) for s in ("left", "right")} == pols
        left_log, right_log = r.left.logtext(), r.right.logtext()
        assert '"peer" #3: initiating rekey to replace Child SA #2' in left_log
        assert "initiator rekeyed Child SA #2 using #1" in left_log
        assert "responder rekeyed Child SA #2 using #1" in right_log
        assert '"peer" #2: deleting established Child SA using IKE SA #1' in left_log
        assert "deleting established Child SA" not in right_log
