"""replay --kernel says first what the running kernel lacks and which lines will differ for
that reason, from the kernel's .config."""
from __future__ import annotations

import gzip

from xfrmd.replay.kernel_check import host_lacks, line_needs, report
from xfrmd.replay.runner import read_script

SCRIPT = """link add d9 type dummy
xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 reqid 1 mode tunnel \\
    aead "rfc4106(gcm(aes))" 0x1111111111111111111111111111111111111111 128
xfrm state add src 2001:db8::1 dst 2001:db8::2 proto esp spi 0x101 reqid 1 mode tunnel \\
    enc "cbc(aes)" 0x11111111111111111111111111111111 auth-trunc "hmac(sha256)" \\
    0x1111111111111111111111111111111111111111111111111111111111111111 128 offload dev eth0 dir out
xfrm policy list
"""


def test_each_line_names_the_options_it_needs():
    needs = [line_needs(words) for _, words, _ in read_script(SCRIPT)]
    assert needs == [{"DUMMY"}, {"INET_ESP", "CRYPTO_GCM"},
                     {"INET6_ESP", "CRYPTO_AES", "CRYPTO_SHA256", "XFRM_OFFLOAD"}, set()]


def test_a_kernel_without_esp4_gcm_and_dummy(tmp_path):
    config = tmp_path / "config.gz"
    with gzip.open(config, "wt") as f:
        f.write("CONFIG_XFRM_OFFLOAD=y\nCONFIG_INET6_ESP=m\n# CONFIG_INET_ESP is not set\n"
                "CONFIG_CRYPTO_AES=y\nCONFIG_CRYPTO_SHA256=y\nCONFIG_BONDING=m\n")
    lacks, path = host_lacks([str(tmp_path / "missing"), str(config)])
    assert path == str(config) and {"INET_ESP", "CRYPTO_GCM", "DUMMY"} <= lacks
    assert not {"INET6_ESP", "XFRM_OFFLOAD", "BONDING"} & lacks
    assert report("s.ip", read_script(SCRIPT), lacks, path) == [
        f"xfrmd replay: this kernel ({config}) was built without CRYPTO_GCM, DUMMY, INET_ESP; "
        "these lines will answer differently from xfrmd's default kernel:",
        "  s.ip:1: needs DUMMY",
        "  s.ip:2: needs CRYPTO_GCM, INET_ESP",
        "xfrmd replay: to compare like with like, build xfrmd the same way: xfrmd ctl kconfig "
        "set CRYPTO_GCM=n DUMMY=n INET_ESP=n"]


def test_nothing_to_say_or_nothing_known():
    assert report("s.ip", read_script(SCRIPT), set(), "/proc/config.gz") == []
    assert host_lacks(["/nonexistent/config"]) == (None, None)
    (line,) = report("s.ip", read_script(SCRIPT), None, None)
    assert line.startswith("xfrmd replay: cannot tell what this kernel was built without")
