"""Control for the IKE tests: two charons in real namespaces joined by a veth, talking to
the REAL kernel (no shim). IKE works over the veth; this kernel has no ESP, so the CHILD_SA
is refused (NO_PROPOSAL_CHOSEN, IKE_SA kept).
When this fails, the fixture is broken, not xfrmd."""
from __future__ import annotations

from xfrmd.ike import charon, pluto
from xfrmd.ike.netns import RealPair

from .ike_helpers import require_charon, require_pluto, require_root


def _initiate_on_the_real_kernel(cls, tmp_path, *, list_sas=False):
    """Two ``cls`` daemons in real namespaces (no shim), ``left`` initiating: the initiate
    result, the initiator's SA list (``list_sas``) and the responder, both stopped and the
    namespaces removed."""
    pair = RealPair()
    left = cls(pair, "left", str(tmp_path))
    right = cls(pair, "right", str(tmp_path))
    try:
        left.start()
        right.start()
        p = left.initiate()
        sas = left.list_sas() if list_sas else None
    finally:
        left.stop()
        right.stop()
        pair.close()
    return p, sas, right


def test_charon_pair_on_real_kernel_establishes_ike_but_no_child(tmp_path):
    require_root()
    require_charon()
    p, sas, right = _initiate_on_the_real_kernel(charon.Charon, tmp_path, list_sas=True)
    assert "IKE_SA peer[1] established between 192.0.2.1" in p.stdout
    assert "received NO_PROPOSAL_CHOSEN notify, no CHILD_SA built" in p.stdout
    assert p.returncode != 0
    assert "ESTABLISHED, IKEv2" in sas and "INSTALLED" not in sas
    # the responder could not install its SAs in the real kernel
    assert "unable to install inbound and outbound IPsec SA (SAD) in kernel" in right.logtext()


def test_pluto_pair_on_real_kernel_establishes_ike_but_no_child(tmp_path):
    require_root()
    require_pluto()
    p, _, right = _initiate_on_the_real_kernel(pluto.Pluto, tmp_path)
    assert "initiator established IKE SA" in p.stdout
    assert "IKE_AUTH response rejected Child SA with TS_UNACCEPTABLE" in p.stdout
    assert "Protocol not supported" in right.logtext()
