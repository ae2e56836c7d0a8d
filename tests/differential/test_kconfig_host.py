"""The host-profile reader of the differential tests (kconfig_host.py): its probes recover any
profile from the emulated kernel (so they observe what they claim to), probing the running
kernel without a config file gives what its config says, and a config file is read."""
from __future__ import annotations

import gzip
import random

import pytest

from tests.differential import kconfig_host as H
from xfrmd import kconfig
from xfrmd.clock import ManualClock
from xfrmd.kernel import Kernel

NON_CRYPTO = [n for n, o in kconfig.OPTIONS.items() if not o.algorithms]
CRYPTO = [n for n, o in kconfig.OPTIONS.items() if o.algorithms]
# kept on in the random profiles: an xfrm type shows only through an SA naming an algorithm
# the kernel has (ESP: cbc(aes), AH: hmac(sha1), IPComp: deflate)
KEEP = {"CRYPTO_AES", "CRYPTO_SHA1", "CRYPTO_DEFLATE"}


def _profile(seed: int) -> dict[str, bool]:
    rnd = random.Random(seed)
    values = {n: rnd.random() < 0.5 for n in kconfig.OPTIONS if n not in KEEP}
    for n, v in values.items():                 # nothing on whose dependency is off
        dep = kconfig.OPTIONS[n].depends
        values[n] = v and values.get(dep, True) if dep else v
    cfg = kconfig.KernelConfig()
    cfg.update(values)
    return dict(cfg.values)


def _observable(options: dict[str, bool]) -> dict[str, bool]:
    """What the probes can see: the tunnel types only through IPComp's tunnel mode, IP-TFS
    only through an ESP SA."""
    out = dict(options)
    out["XFRM_IPTFS"] = options["XFRM_IPTFS"] and options["INET_ESP"]
    out["INET_XFRM_TUNNEL"] = options["INET_XFRM_TUNNEL"] and options["INET_IPCOMP"]
    out["INET6_XFRM_TUNNEL"] = options["INET6_XFRM_TUNNEL"] and options["INET6_IPCOMP"]
    return out


@pytest.mark.parametrize("seed", [None, 0, 1, 2, 3, 4, 5])
def test_the_probes_recover_an_emulated_kernels_profile(seed):
    options = {n: True for n in kconfig.OPTIONS} if seed is None else _profile(seed)
    k = Kernel(ManualClock(), seed=1)
    kconfig.configure(k, options)
    nl = H.EmulatedKernel(k)
    present = H.probe_algorithms(nl)
    for name, opt in kconfig.OPTIONS.items():
        for alg in opt.algorithms:
            assert present[alg] == options[name], alg
    got = H.probe_options(nl, present)
    assert got == {n: v for n, v in _observable(options).items() if n in NON_CRYPTO}
    assert H.crypto_options(present) == {n: options[n] for n in CRYPTO}


def test_a_config_file_is_read_plain_or_gzipped(tmp_path):
    text = "# CONFIG_IP_MROUTE is not set\nCONFIG_DUMMY=m\nCONFIG_INET_ESP=y\n"
    plain, gz = tmp_path / "config", tmp_path / "config.gz"
    plain.write_text(text)
    with gzip.open(gz, "wt") as f:
        f.write(text)
    for path in (str(plain), str(gz)):
        k = Kernel(ManualClock(), seed=1)
        kconfig.configure(k, {"CRYPTO_GCM": False})          # what the algorithm probe sees
        prof = H.read_host_profile([str(tmp_path / "absent"), path], nl=H.EmulatedKernel(k))
        assert prof.source == path
        on = {n for n, v in prof.options.items() if v}
        assert {"DUMMY", "INET_ESP"} <= on and not {"IP_MROUTE", "BONDING", "CRYPTO_GCM"} & on
        assert prof.missing_algorithms == {"rfc4106(gcm(aes))", "rfc4543(gcm(aes))"}


def test_a_module_the_kernel_cannot_load_counts_as_absent(tmp_path):
    """CONFIG_DUMMY=m says a module exists somewhere; the probe says whether this kernel
    can load it (a container without the host's modules, a blacklist)."""
    path = tmp_path / "config"
    path.write_text("CONFIG_DUMMY=m\nCONFIG_BONDING=m\nCONFIG_VETH=y\n")
    k = Kernel(ManualClock(), seed=1)
    kconfig.configure(k, {"DUMMY": False})
    prof = H.read_host_profile([str(path)], nl=H.EmulatedKernel(k))
    assert (prof.options["DUMMY"], prof.options["BONDING"], prof.options["VETH"]) == \
        (False, True, True)


def test_probing_the_running_kernel_without_a_config_gives_its_config(host_kconfig):
    """With /proc/config.gz (and /boot) absent the reader probes a scratch namespace; on a
    machine whose config is readable both ways must agree, option by option."""
    prof = host_kconfig
    probed = H.read_host_profile(paths=[])
    assert probed.source == "probe"
    assert probed.missing_algorithms == prof.missing_algorithms
    if prof.source == "probe":
        pytest.skip("no kernel config on this machine to compare the probes with")
    assert _observable(probed.options) == _observable(prof.options)


def test_the_emulated_kernel_of_the_differential_tests_is_built_like_this_one(host_kconfig):
    """What the differential tests run against: probing it gives the running kernel's
    observable profile back."""
    prof = host_kconfig
    nl = H.EmulatedKernel(H.emulated_kernel())
    present = H.probe_algorithms(nl)
    assert {a for a, ok in present.items() if not ok} == prof.missing_algorithms
    expected = {n: v for n, v in _observable(prof.options).items() if n in NON_CRYPTO}
    assert H.probe_options(nl, present) == expected
