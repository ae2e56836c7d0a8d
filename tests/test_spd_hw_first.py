"""The packet-offload SPD rules: a hardware (packet-offload) policy sits at the head of the
SPD and is found before any software policy, whatever their priorities
(``xfrm_policy_insert_list`` adds it at the head of its chain; the packet offload series'
cover letter: "HW policies are placed at the head of the SPD"); among hardware policies the
newest is found first. A software policy still wins where no hardware policy matches."""
from __future__ import annotations

from xfrmd.clock import ManualClock
from xfrmd.datapath.output import xfrm_xmit
from xfrmd.kernel import Kernel
from xfrmd.lagreport.lab import KEY, InprocBackend
from xfrmd.replay.runner import read_script, run_line
from xfrmd.topology import from_dict

TOPO = {"netns": [{"name": "default", "device": [
    {"name": "eth0", "kind": "mlx5", "addresses": ["192.0.2.1/24"]},
    {"name": "inner", "kind": "dummy", "addresses": ["10.0.0.1/24"]}],
    "route": [{"dst": "10.1.0.0/24", "via": "192.0.2.2", "dev": "eth0"}]}]}


def _kernel(script: str) -> Kernel:
    k = Kernel(ManualClock(), topology=from_dict(TOPO), seed=1)
    backend = InprocBackend(k, "default")
    for lineno, words, text in read_script(script):
        res = run_line(backend, words, lineno, {"iproute2": "6.15"})
        assert res.status == 0, (text, res.stderr)
    return k


def _policy_used(k: Kernel, dst: str = "10.1.0.5") -> int:
    res = xfrm_xmit(k.netns("default"), "10.0.0.1", dst, 17, 1000, 2000, 64, 1).to_dict()
    return res["batches"][0]["policy"]["index"]


SA = (f"ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi {{spi}} reqid {{reqid}} "
      f"mode tunnel aead 'rfc4106(gcm(aes))' {KEY} 128 {{off}}")
SW = ("ip xfrm policy add src 10.0.0.0/24 dst 10.1.0.0/24 dir out priority 10 index {idx} "
      "tmpl src 192.0.2.1 dst 192.0.2.2 proto esp reqid 1 mode tunnel")
HW = ("ip xfrm policy add src 10.0.0.1/32 dst {dst} dir out priority 100 index {idx} "
      "tmpl src 192.0.2.1 dst 192.0.2.2 proto esp reqid 2 mode tunnel "
      "offload packet dev eth0")


def test_a_hardware_policy_is_found_before_a_software_one_of_lower_priority():
    k = _kernel("\n".join([
        SA.format(spi="0x100", reqid=1, off=""),
        SA.format(spi="0x200", reqid=2, off="offload packet dev eth0 dir out"),
        SW.format(idx=0x101), HW.format(dst="10.1.0.5/32", idx=0x201)]))
    assert _policy_used(k) == 0x201            # priority 100 (HW) before priority 10 (SW)
    assert _policy_used(k, "10.1.0.6") == 0x101   # no HW policy covers it: the SW one


def test_the_newest_hardware_policy_is_found_first():
    k = _kernel("\n".join([
        SA.format(spi="0x200", reqid=2, off="offload packet dev eth0 dir out"),
        HW.format(dst="10.1.0.0/24", idx=0x201).replace("priority 100", "priority 1"),
        HW.format(dst="10.1.0.5/32", idx=0x301)]))
    assert _policy_used(k) == 0x301
