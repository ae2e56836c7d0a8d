"""NAT-T with charon 6.0.1: ``encap = yes`` in swanctl.conf forces UDP encapsulation (charon
fakes the NAT-D hashes, both ends float to port 4500), so every SA carries XFRMA_ENCAP
(UDP_ENCAP_ESPINUDP, 4500 → 4500) and the ESP packets leave inside UDP.

With offload, what the kernel answers is the driver's call. Since Linux 6.11
xfrm_dev_state_add refuses only TFC padding ("Encapsulation and TFC padding can't be
offloaded" was its answer to an encapsulated SA with any offload up to 6.5 — Debian 12's 6.1
— and with crypto offload in 6.6–6.10), so the emulated drivers decide, as theirs do in 6.12:

* mlx5 (mlx5e_xfrm_validate_state): ESP-in-UDP in packet offload and transport mode only —
  "Encapsulation is supported in packet offload mode only" for crypto offload,
  "Encapsulation is supported in transport mode only" for a tunnel-mode SA;
* netdevsim (nsim_ipsec_add_sa) does not look at the encapsulation: crypto offload is
  accepted, and the output path (xfrm_dev_offload_ok) offloads an encapsulated crypto SA."""
from __future__ import annotations

import pytest

from .conftest import require_userland
from .ike_helpers import GCM_CHARON, INBOUND, PACKET, Pair, charon6, require_root, wait

pytestmark = pytest.mark.userland

ESPINUDP = {"type": 2, "sport": 4500, "dport": 4500}     # UDP_ENCAP_ESPINUDP
UP = "initiate completed successfully"


def _natt(**kw):
    return charon6(conn={"encap": "yes"}, esp_proposals=GCM_CHARON, **kw)


def _udp_4500(packet_hex: str, spi: int) -> bool:
    """An IPv4 packet (no options) of UDP 4500 → 4500 whose payload starts with ``spi``."""
    p = bytes.fromhex(packet_hex)
    return (p[0] == 0x45 and p[9] == 17 and p[20:24] == bytes.fromhex("11941194")
            and int.from_bytes(p[28:32], "big") == spi)


def _out(kp, side="left") -> dict:
    [sa] = [sa for sa in kp.sad(side) if sa["src"] == kp.real.addr[side]]
    return sa


def test_charon6_forced_encapsulation_in_software(tmp_path):
    """On veths (no offload): both kernels hold ESP-in-UDP SAs, and emulated traffic leaves
    as UDP 4500 datagrams that the other side's input path decapsulates and accepts."""
    require_root()
    require_userland("trixie-strongswan")
    with Pair(tmp_path, _natt(), _natt()) as p:
        assert UP in p.left.initiate().stdout
        assert wait(lambda: len(p.kp.sad("right")) == 2)
        for side in ("left", "right"):
            assert [sa["encap"] for sa in p.kp.sad(side)] == [ESPINUDP, ESPINUDP]
        assert "remote host is behind NAT" in p.left.logtext()
        spi = _out(p.kp)["spi"]
        res = p.kp.xmit("left", count=3, size=100, deliver="right", packets=True)
        assert (res["sent"], res["deliver"]["delivered"]) == (3, 3), res
        assert res["batches"][0]["sas"][0]["path"] == "software"
        assert len(res["packets"]) == 3 and all(_udp_4500(x, spi) for x in res["packets"])


# device, hw_offload, mode → the SAs' offload flags (None: the Child SA failed), the output
# path of the emulated traffic, lines of the daemons' logs
NATT_OFFLOAD = [
    ("mlx5", "packet", "transport", [PACKET, PACKET | INBOUND], "packet-offload",
     ["HW offload: packet"]),
    ("mlx5", "auto", "transport", [PACKET, PACKET | INBOUND], "packet-offload",
     ["HW offload: auto"]),
    ("mlx5", "packet", "tunnel", None, None,
     ["received netlink error: mlx5_core: Encapsulation is supported in transport mode only "
      "(22)", "unable to add SAD entry"]),
    ("mlx5", "yes", "transport", None, None,
     ["received netlink error: mlx5_core: Encapsulation is supported in packet offload mode "
      "only (22)", "unable to add SAD entry"]),
    # auto: the packet offload refused (tunnel mode), the crypto retry refused (NAT-T), and
    # charon 6.0.1 does not go on to software after an EINVAL: the Child SA fails
    ("mlx5", "auto", "tunnel", None, None,
     ["Encapsulation is supported in transport mode only (22)",
      "failed to install SA with packet HW offload, trying with crypto HW offload",
      "Encapsulation is supported in packet offload mode only (22)",
      "unable to add SAD entry"]),
    ("netdevsim", "yes", "tunnel", [0, INBOUND], "crypto-offload", ["HW offload: crypto"]),
]


@pytest.mark.parametrize("dev,hw,mode,flags,path,lines", NATT_OFFLOAD,
                         ids=[f"{d}-{h}-{m}" for d, h, m, *_ in NATT_OFFLOAD])
def test_charon6_nat_t_with_hw_offload(tmp_path, dev, hw, mode, flags, path, lines):
    require_root()
    require_userland("trixie-strongswan")
    make = _natt(hw_offload=hw, mode=mode)
    with Pair(tmp_path, make, make, device_kind=dev) as p:
        r = p.left.initiate()
        logs = lambda: p.left.logtext() + p.right.logtext()      # noqa: E731
        for line in lines:
            assert wait(lambda: line in logs(), timeout=5), (line, r.stdout)
        if flags is None:
            assert UP not in r.stdout
            assert p.kp.sad("left") == [] and p.kp.sad("right") == []
            return
        assert UP in r.stdout, r.stdout
        assert wait(lambda: len(p.kp.sad("right")) == 2)
        for side in ("left", "right"):
            sas = p.kp.sad(side)
            assert [sa["encap"] for sa in sas] == [ESPINUDP, ESPINUDP]
            assert sorted(sa["offload"]["flags"] for sa in sas) == flags
            assert {sa["offload"]["dev"] for sa in sas} == {p.kp.real.dev[side]}
        res = p.kp.xmit("left", count=3, size=100, deliver="right")
        assert (res["sent"], res["deliver"]["delivered"]) == (3, 3), res
        assert res["batches"][0]["sas"][0]["path"] == path
