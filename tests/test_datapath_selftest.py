"""The kernel selftests' IPsec offload checks, with `ping` replaced by `xfrmd ctl xmit`, run
through real iproute2 inside `xfrmd run`: rtnetlink.sh kci_test_ipsec_offload (netdevsim's
debugfs shows tx=3 after three packets) and bond_ipsec_offload.sh (the active slave counts
them, the new active slave after a failover too); plus an IKE-style pair of namespaces whose
ESP decrypts across, written to a pcap that scapy reads."""
from __future__ import annotations

from .conftest import require_shim, xfrmd_run

KEY = "0x3132333435363738393031323334353664636261"
NSIM_TOPO = """
[[netns]]
name = "default"
[[netns.device]]
name = "eni0np1"
kind = "netdevsim"
nic = "netdevsim0"
addresses = ["192.168.123.3/24"]
"""
BOND_TOPO = """
[[netns]]
name = "default"
[[netns.device]]
name = "nsimA"
kind = "netdevsim"
nic = "netdevsim0"
master = "bond0"
[[netns.device]]
name = "nsimB"
kind = "netdevsim"
nic = "netdevsim1"
master = "bond0"
[[netns.device]]
name = "bond0"
kind = "bond"
mode = "active-backup"
addresses = ["192.0.2.1/24"]
"""


def _run(tmp_path, topo, script):
    require_shim("ip")
    f = None
    if topo:
        f = tmp_path / "topo.toml"
        f.write_text(topo)
    p = xfrmd_run(script, f, timeout=90)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def _sa_pol(a, b, dev):
    return f"""
ip xfrm policy add src {a}/24 dst {b}/24 dir out tmpl proto esp src {a} dst {b} spi 9 mode transport reqid 42
ip xfrm policy add src {b}/24 dst {a}/24 dir in tmpl proto esp src {b} dst {a} spi 9 mode transport reqid 42
ip xfrm state add proto esp src {a} dst {b} spi 9 mode transport reqid 42 aead 'rfc4106(gcm(aes))' {KEY} 128 sel src {a}/24 dst {b}/24 offload dev {dev} dir out
ip xfrm state add proto esp src {b} dst {a} spi 9 mode transport reqid 42 aead 'rfc4106(gcm(aes))' {KEY} 128 sel src {b}/24 dst {a}/24 offload dev {dev} dir in
"""


def test_kci_test_ipsec_offload(tmp_path):
    ipsec = "/sys/kernel/debug/netdevsim/netdevsim0/ports/0/ipsec"
    out = _run(tmp_path, NSIM_TOPO, _sa_pol("192.168.123.3", "192.168.123.4", "eni0np1") + f"""
ip xfrm state list | grep -c 'crypto offload parameters: dev eni0np1 dir'
xfrmd ctl xmit 192.168.123.3 192.168.123.4 proto icmp count 3
cat {ipsec}
ip -s xfrm state list dir out 2>/dev/null | grep -A1 'lifetime current' || ip -s xfrm state list | grep -m1 -A1 'lifetime current'
""")
    lines = out.splitlines()
    assert lines[0] == "2"
    assert lines[1].startswith("3 sent: policy out index 1; SA spi 0x00000009 reqid 42 transport "
                               "rfc4106(gcm(aes)): crypto-offload dev eni0np1 seq 1-3")
    assert lines[3:10] == [
        "SA count=2 tx=3",
        "sa[0] tx ipaddr=192.168.123.4",
        "sa[0]    spi=0x00000009 proto=0x32 salt=0x61626364 crypt=1",
        "sa[0]    key=0x34333231 38373635 32313039 36353433",
        "sa[1] rx ipaddr=192.168.123.3",
        "sa[1]    spi=0x00000009 proto=0x32 salt=0x61626364 crypt=1",
        "sa[1]    key=0x34333231 38373635 32313039 36353433"]


def test_bond_ipsec_offload_counts_on_the_active_slave_and_after_failover(tmp_path):
    a, b = ("/sys/kernel/debug/netdevsim/netdevsim%d/ports/0/ipsec" % i for i in (0, 1))
    out = _run(tmp_path, BOND_TOPO, _sa_pol("192.0.2.1", "192.0.2.2", "bond0") + f"""
ip xfrm state list | grep -c 'crypto offload parameters: dev bond0 dir'
xfrmd ctl xmit 192.0.2.1 192.0.2.2 proto icmp count 3
head -1 {a} {b} | grep SA
xfrmd ctl link nsimA carrier off
xfrmd ctl xmit 192.0.2.1 192.0.2.2 proto icmp count 3
head -1 {a} {b} | grep SA
ip xfrm state flush
head -1 {a} {b} | grep SA
""")
    lines = out.splitlines()
    assert lines[0] == "2"
    assert "crypto-offload dev bond0 slave nsimA seq 1-3" in lines[1]
    assert lines[3:5] == ["SA count=2 tx=3", "SA count=0 tx=0"]
    # failover: bond_ipsec_add_sa_all re-adds both SAs on nsimB, whose tx starts at 0; the
    # sequence numbers go on (the core numbers crypto-offloaded packets)
    assert "crypto-offload dev bond0 slave nsimB seq 4-6" in lines[5]
    assert lines[7:9] == ["SA count=0 tx=3", "SA count=2 tx=3"]
    assert lines[9:11] == ["SA count=0 tx=3", "SA count=0 tx=3"]


def test_ike_style_pair_decrypts_across_and_pcap(tmp_path):
    pcap = tmp_path / "esp.pcap"
    out = _run(tmp_path, None, f"""
set -e
xfrmd ctl netns add right
XFRMD_NETNS=right ip link add d0 type dummy
XFRMD_NETNS=right ip link set d0 up
XFRMD_NETNS=right ip addr add 198.51.100.2/24 dev d0
for ns in default right; do
  XFRMD_NETNS=$ns ip xfrm state add src 198.51.100.1 dst 198.51.100.2 proto esp spi 0x1000 reqid 1 mode tunnel replay-window 32 aead 'rfc4106(gcm(aes))' {KEY} 128
done
ip xfrm policy add src 198.51.100.1/32 dst 198.51.100.2/32 dir out tmpl src 198.51.100.1 dst 198.51.100.2 proto esp reqid 1 mode tunnel
XFRMD_NETNS=right ip xfrm policy add src 198.51.100.1/32 dst 198.51.100.2/32 dir in tmpl src 198.51.100.1 dst 198.51.100.2 proto esp reqid 1 mode tunnel
xfrmd ctl xmit 198.51.100.1 198.51.100.2 sport 1000 dport 2000 count 40 size 200 --deliver right --pcap {pcap}
XFRMD_NETNS=right ip -s xfrm state | grep -A1 'lifetime current' | tail -1
""")
    lines = out.splitlines()
    assert lines[0].startswith("40 sent: policy out index 1; SA spi 0x00001000 reqid 1 tunnel")
    assert "right: 40 delivered: SA spi 0x00001000 reqid 1; software; seq 1-40; policy in index 8" in lines
    assert lines[-1].split() == ["9120(bytes),", "40(packets)"]        # 40 × (20 + 8 + 200)
    from scapy.layers.inet import IP, UDP
    from scapy.layers.ipsec import ESP, SecurityAssociation
    from scapy.utils import rdpcap
    pkts = rdpcap(str(pcap))
    assert len(pkts) == 40
    sa = SecurityAssociation(ESP, spi=0x1000, crypt_algo="AES-GCM",
                             crypt_key=bytes.fromhex(KEY[2:]), auth_algo="NULL", auth_key=None)
    for i, p in enumerate(pkts, 1):
        ip = IP(bytes(p))
        assert ip[ESP].seq == i
        assert sa.decrypt(ip)[UDP].dport == 2000


def test_drops_are_counted_in_xfrm_stat(tmp_path):
    out = _run(tmp_path, None, """
ip xfrm policy add src 198.51.100.1/32 dst 198.51.100.2/32 dir out action block
xfrmd ctl xmit 198.51.100.1 198.51.100.2 count 2
xfrmd ctl xfrm-stat | grep -E 'XfrmOutPolBlock|XfrmOutNoStates'
""")
    assert out.splitlines() == [
        "2 dropped: policy out index 1; XfrmOutPolBlock: policy action block: its selector "
        "src 198.51.100.1/32 dst 198.51.100.2/32 covers this flow; delete the policy or add it "
        "with action allow (errno EPERM)",
        "sent 0 dropped 2",
        "XfrmOutNoStates         \t0",
        "XfrmOutPolBlock         \t2"]
