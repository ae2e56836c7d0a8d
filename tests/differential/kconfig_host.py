"""The running kernel's build profile, so that every differential test compares against an
emulated kernel built the same way (xfrmd.kconfig; docs/topology.md "Kernel options").

Nothing about the machine is assumed. The options come from the kernel's own ``.config``
(``/proc/config.gz``, else ``/boot/config-$(uname -r)``; an option built as a module is
probed, as the module may not be loadable here); when neither exists they are probed in a
scratch network namespace, each by the request whose answer the option changes (a
``dummy`` link, an ESP SA, the inet6 netconf, the ipmr rule dump, …). The crypto algorithms
are always probed (an SA naming each one: ENOSYS means the crypto API lacks it), because one
algorithm can come from several symbols (the generic C code or an arch driver such as
aesni-intel) and some (lzs, lzjh) from none.

The probes speak raw netlink through a small transport, so the same code runs against the
emulated kernel too (tests/differential/test_kconfig_host.py checks that it recovers a
profile exactly)."""
from __future__ import annotations

import ctypes
import errno as E
import functools
import gzip
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import uuid
from dataclasses import dataclass

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from tests.sad_helpers import A, M, algo, algo2, selector, usersa_id, usersa_info
from xfrmd import kconfig
from xfrmd.xfrm import algos

NETLINK_ROUTE, NETLINK_XFRM = 0, 6
NETLINK_CAP_ACK, NETLINK_EXT_ACK = 10, 11
NLMSGERR_ATTR_MSG = 1
RTM_NEWLINK, RTM_GETROUTE, RTM_GETRULE, RTM_GETNETCONF = 16, 26, 34, 82
IFLA_IFNAME, IFLA_LINKINFO, IFLA_INFO_KIND = 3, 18, 1
NETCONFA_IFINDEX, NETCONFA_MC_FORWARDING = 1, 4
NLM_F_CREATE_EXCL = 0x400 | 0x200
CLONE_NEWNET = 0x40000000


def config_files() -> tuple[str, ...]:
    return ("/proc/config.gz", f"/boot/config-{os.uname().release}")


def read_config(paths) -> tuple[str | None, str | None]:
    """(text, path) of the first readable kernel config among paths, or (None, None)."""
    for path in paths:
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as f:
                return f.read(), path
        except OSError:
            continue
    return None, None


# -- transports: one request in, the answer's messages out -------------------------------------

@dataclass
class Answer:
    errno: int                 # 0 for an ACK or a finished dump
    extack: str
    messages: list[bytes]      # the data messages (payload after the nlmsghdr)


def _parse(datagrams: list[bytes]) -> Answer | None:
    msgs = []
    for d in datagrams:
        off = 0
        while off + 16 <= len(d):
            ln, t = struct.unpack_from("=IH", d, off)
            if ln < 16:
                break
            if t == N.NLMSG_ERROR:
                err = -struct.unpack_from("=i", d, off + 16)[0]
                text = ""
                for ra in N.iter_attrs(d, off + 36, off + ln):   # CAP_ACK: no echoed payload
                    if ra.type == NLMSGERR_ATTR_MSG:
                        text = bytes(d[ra.start:ra.end]).rstrip(b"\0").decode()
                return Answer(err, text, msgs)
            if t == N.NLMSG_DONE:        # a dump's error travels in its DONE (netlink_dump)
                err = -struct.unpack_from("=i", d, off + 16)[0] if ln >= 20 else 0
                return Answer(err, "", msgs)
            msgs.append(bytes(d[off + 16:off + ln]))
            off += (ln + 3) & ~3
    return None


def netlink_socket_in(netns: str, proto: int) -> socket.socket:
    """A raw netlink socket of ``proto`` created inside the named network namespace (``ip
    netns add``): this thread enters it with setns, makes the socket, and comes back."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        try:
            return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto)
        finally:
            libc.setns(own, CLONE_NEWNET)
    finally:
        os.close(own)
        os.close(target)


class RealNetns:
    """Raw netlink sockets opened inside a fresh namespace of the running kernel."""

    def __init__(self):
        self.name = "xfrmd-kconfig-" + uuid.uuid4().hex[:8]
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.socks: dict[int, socket.socket] = {}

    def _open(self, proto: int) -> socket.socket:
        s = netlink_socket_in(self.name, proto)
        s.bind((0, 0))
        s.setsockopt(N.SOL_NETLINK, NETLINK_EXT_ACK, 1)
        s.setsockopt(N.SOL_NETLINK, NETLINK_CAP_ACK, 1)
        s.settimeout(5)
        return s

    def ask(self, proto: int, msg: bytes) -> Answer:
        s = self.socks.get(proto) or self.socks.setdefault(proto, self._open(proto))
        s.send(msg)
        got: list[bytes] = []
        while True:
            got.append(s.recv(1 << 16))
            ans = _parse(got)
            if ans is not None:
                return ans

    def close(self) -> None:
        for s in self.socks.values():
            s.close()
        subprocess.run(["ip", "netns", "del", self.name], check=False)


class EmulatedKernel:
    """The same requests to an in-process emulated kernel."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.socks: dict = {}

    def ask(self, proto: int, msg: bytes) -> Answer:
        k = self.kernel
        s = self.socks.get(proto)
        if s is None:
            s = self.socks[proto] = k.socket(proto, pid=4243)
            k.setsockopt(s, N.SOL_NETLINK, NETLINK_EXT_ACK, 1)
            k.setsockopt(s, N.SOL_NETLINK, NETLINK_CAP_ACK, 1)
        k.deliver(s, msg)
        got = []
        while True:
            d = k.recv(s)
            if d is None:
                raise AssertionError("the emulated kernel did not finish its answer")
            got.append(d)
            ans = _parse(got)
            if ans is not None:
                return ans


# -- the probes --------------------------------------------------------------------------------

def _msg(t: int, payload: bytes, flags: int = N.NLM_F_REQUEST | N.NLM_F_ACK) -> bytes:
    return N.encode_msg(t, flags, 1, 0, payload)


_DUMP = N.NLM_F_REQUEST | N.NLM_F_DUMP


def probe_link_kind(nl, kind: str) -> bool:
    """``ip link add kcp0 type KIND``: only a kernel without the kind says "Unknown device
    type" (rtnl_link_ops_get found nothing, even after request_module)."""
    info = N.nla(IFLA_INFO_KIND, kind.encode() + b"\0")
    body = struct.pack("=BxHiII", 0, 0, 0, 0, 0) + N.nla(IFLA_IFNAME, b"kcp0\0") + \
        N.nla(IFLA_LINKINFO | 0x8000, info)
    ans = nl.ask(NETLINK_ROUTE, _msg(RTM_NEWLINK, body, N.NLM_F_REQUEST | N.NLM_F_ACK | NLM_F_CREATE_EXCL))
    if ans.errno == 0:                                      # made one: take it away again
        nl.ask(NETLINK_ROUTE, _msg(17, struct.pack("=BxHiII", 0, 0, 0, 0, 0)
                                   + N.nla(IFLA_IFNAME, b"kcp0\0")))
    return not (ans.errno == E.EOPNOTSUPP and ans.extack == "Unknown device type")


def probe_ipv6_mroute(nl) -> bool:
    """inet6 netconf of ``all``: mc_forwarding only with CONFIG_IPV6_MROUTE."""
    body = struct.pack("=Bxxx", 10) + N.nla(NETCONFA_IFINDEX, struct.pack("=i", -1))
    ans = nl.ask(NETLINK_ROUTE, _msg(RTM_GETNETCONF, body))      # the reply, then the ACK
    m = ans.messages[0]
    return any(ra.type == NETCONFA_MC_FORWARDING for ra in N.iter_attrs(m, 4, len(m)))


def probe_ip_mroute(nl) -> bool:
    """A RTNL_FAMILY_IPMR route dump with lo up: ipmr's own dump (its empty cache) or, in a
    kernel without it, the AF_UNSPEC dump of every family (lo's local routes)."""
    up = struct.pack("=BxHiII", 0, 0, 1, 1, 1)              # ifindex 1: IFF_UP
    nl.ask(NETLINK_ROUTE, _msg(RTM_NEWLINK, up))
    ans = nl.ask(NETLINK_ROUTE, _msg(RTM_GETROUTE, struct.pack("=BBBBBBBBI", 128, 0, 0, 0, 0,
                                                               0, 0, 0, 0), _DUMP))
    return all(m[0] == 128 for m in ans.messages)


def probe_rule_family(nl, family: int) -> bool:
    """A rule dump of one family: EAFNOSUPPORT when it has no fib_rules_ops."""
    ans = nl.ask(NETLINK_ROUTE, _msg(RTM_GETRULE, struct.pack("=BBBBBBBBI", family, 0, 0, 0, 0,
                                                              0, 0, 0, 0), _DUMP))
    return ans.errno != E.EAFNOSUPPORT


def _policy(offload: bytes) -> bytes:
    sel = selector("10.0.0.0", "10.0.1.0", 24, 24, 2)
    info = sel + struct.pack("=8Q4QIIBBBB4x", *([X.XFRM_INF] * 4), 0, 0, 0, 0, 0, 0, 0, 0,
                             0, 0, X.XFRM_POLICY_OUT, 0, 0, 0)
    return _msg(M.NEWPOLICY, info + offload)


def probe_xfrm_offload(nl) -> bool:
    """A policy asking for offload with flags 0: xfrm_dev_policy_add refuses it (EINVAL);
    the !CONFIG_XFRM_OFFLOAD stub accepts the policy and ignores the request."""
    ans = nl.ask(NETLINK_XFRM, _policy(N.nla(A.OFFLOAD_DEV, struct.pack("=iB3x", 1, 0))))
    nl.ask(NETLINK_XFRM, _msg(M.FLUSHPOLICY, b""))
    return ans.errno != 0


_spi = iter(range(0x100, 0xFFFF))


def _key(desc) -> bytes:
    if desc.keys is None:
        return bytes(20)
    return bytes(16 if 16 in desc.keys else min(desc.keys))


def _alg_attr(cls: str, desc) -> bytes:
    if cls == "aead":
        return N.nla(A.ALG_AEAD, algo2(desc.name, _key(desc), desc.icv_truncbits))
    if cls == "auth":
        return N.nla(A.ALG_AUTH, algo(desc.name, _key(desc)))
    if cls == "crypt":
        return N.nla(A.ALG_CRYPT, algo(desc.name, _key(desc)))
    return N.nla(A.ALG_COMP, algo(desc.name, b""))


_PROTO = {"aead": X.IPPROTO_ESP, "crypt": X.IPPROTO_ESP, "auth": X.IPPROTO_AH,
          "comp": X.IPPROTO_COMP}


def _newsa(nl, proto: int, family: int, alg: bytes, mode=X.XFRM_MODE_TRANSPORT) -> Answer:
    src, dst = ("192.0.2.1", "198.51.100.1") if family == 2 else ("2001:db8::1", "2001:db8::2")
    info = usersa_info(src=src, dst=dst, spi=next(_spi), proto=proto, mode=mode)
    return nl.ask(NETLINK_XFRM, _msg(M.NEWSA, info + alg))


def _all_algorithms():
    seen = set()
    for cls, table in (("aead", algos.AEAD), ("auth", algos.AUTH), ("crypt", algos.CRYPT),
                       ("comp", algos.COMP)):
        for d in table:
            if d.name not in seen:
                seen.add(d.name)
                yield cls, d


def probe_algorithms(nl) -> dict[str, bool]:
    """Every xfrm_algo.c name: an SA naming it (the type of its class) — the algorithm
    lookup comes before the type lookup, so ENOSYS means the crypto API lacks it, whatever
    types the kernel has."""
    return {d.name: _newsa(nl, _PROTO[cls], 2, _alg_attr(cls, d)).errno != E.ENOSYS
            for cls, d in _all_algorithms()}


def probe_xfrm_type(nl, proto: int, family: int, present: dict[str, bool],
                    mode=X.XFRM_MODE_TRANSPORT) -> bool | None:
    """An SA of the type with an algorithm the kernel has: "Requested type not found" when
    xfrm_get_type fails; None when no algorithm of the class exists (nothing observable)."""
    cls = {X.IPPROTO_ESP: "crypt", X.IPPROTO_AH: "auth", X.IPPROTO_COMP: "comp"}[proto]
    for c, d in _all_algorithms():
        if c == cls and present.get(d.name):
            ans = _newsa(nl, proto, family, _alg_attr(c, d), mode)
            return not (ans.errno == E.EPROTONOSUPPORT and ans.extack == "Requested type not found")
    return None


_TUNNEL_FAIL = "Kernel error: failed to initialize the associated state"
_IPTFS_ATTRS = {36, 37, 38, 39, 40, 41}         # XFRMA_IPTFS_*


def probe_iptfs(nl, present: dict[str, bool]) -> bool:
    """An outbound IP-TFS-mode ESP SA: with xfrm_iptfs it reads back with its IP-TFS
    settings (iptfs_copy_to_user); without, or without ESP, nothing shows them."""
    for c, d in _all_algorithms():
        if c == "crypt" and present.get(d.name):
            src, dst, spi = "192.0.2.1", "198.51.100.1", next(_spi)
            info = usersa_info(src=src, dst=dst, spi=spi, mode=X.XFRM_MODE_IPTFS, replay_window=0)
            ans = nl.ask(NETLINK_XFRM, _msg(M.NEWSA, info + _alg_attr(c, d)
                                            + N.nla(A.SA_DIR, bytes([X.XFRM_SA_DIR_OUT]))))
            if ans.errno:
                return False
            got = nl.ask(NETLINK_XFRM, _msg(M.GETSA, usersa_id(dst=dst, spi=spi)))
            sa = got.messages[0]
            return any(ra.type in _IPTFS_ATTRS for ra in N.iter_attrs(sa, 224, len(sa)))
    return False


def probe_options(nl, present: dict[str, bool]) -> dict[str, bool]:
    """Every non-crypto option of the profile, by the request whose answer it changes."""
    out = {kind_opt: probe_link_kind(nl, kind) for kind, kind_opt in kconfig.LINK_KINDS.items()}
    out["IPV6_MROUTE"] = probe_ipv6_mroute(nl)
    out["IP_MROUTE"] = probe_ip_mroute(nl)
    out["IP_MROUTE_MULTIPLE_TABLES"] = probe_rule_family(nl, 128)
    out["IPV6_MROUTE_MULTIPLE_TABLES"] = probe_rule_family(nl, 129)
    out["XFRM_OFFLOAD"] = probe_xfrm_offload(nl)
    out["XFRM_IPTFS"] = probe_iptfs(nl, present)
    for proto, (v4, v6) in kconfig.XFRM_TYPES.items():
        if proto in (X.IPPROTO_ESP, X.IPPROTO_AH, X.IPPROTO_COMP):
            for opt, family in ((v4, 2), (v6, 10)):
                out[opt] = bool(probe_xfrm_type(nl, proto, family, present))
    # the tunnel types show only through IPComp's tunnel mode (ipcomp_tunnel_attach)
    # (a kernel selects them with IPComp; without IPComp nothing can reach them)
    for opt, comp, family in (("INET_XFRM_TUNNEL", "INET_IPCOMP", 2),
                              ("INET6_XFRM_TUNNEL", "INET6_IPCOMP", 10)):
        out[opt] = out[comp] and _tunnel_ok(nl, family, present)
    return out


def _tunnel_ok(nl, family: int, present) -> bool:
    """An IPComp SA in tunnel mode: ipcomp_tunnel_attach fails without the tunnel type."""
    for c, d in _all_algorithms():
        if c == "comp" and present.get(d.name):
            return _newsa(nl, X.IPPROTO_COMP, family, _alg_attr(c, d),
                          X.XFRM_MODE_TUNNEL).extack != _TUNNEL_FAIL
    return False


def crypto_options(present: dict[str, bool]) -> dict[str, bool]:
    """A crypto option is on when every algorithm it provides is there."""
    return {name: all(present.get(a, False) for a in o.algorithms)
            for name, o in kconfig.OPTIONS.items() if o.algorithms}


# -- the profile -------------------------------------------------------------------------------

@dataclass(frozen=True)
class HostProfile:
    options: dict                  # every xfrmd.kconfig option
    missing_algorithms: frozenset  # xfrm_algo.c names the running kernel's crypto API lacks
    source: str                    # the config file read, or "probe"

    def apply(self, kernel) -> None:
        """Make an emulated kernel (new, before use) match the running one."""
        kconfig.configure(kernel, self.options)
        algos.set_available(kernel, sorted(self.missing_algorithms), False)

    def kernel_table(self) -> str:
        """The ``[kernel]`` topology table: the options that are off."""
        return "[kernel]\n" + "".join(f"CONFIG_{n} = false\n"
                                      for n, on in self.options.items() if not on)

    def crypto_ctl(self, ctl: str) -> list[str]:
        """Shell lines that remove the missing algorithms from a running xfrmd."""
        if not self.missing_algorithms:
            return []
        return [f"{ctl} crypto-alg off " + " ".join(f"'{n}'" for n in sorted(self.missing_algorithms))]


def read_host_profile(paths=None, *, nl=None) -> HostProfile:
    """The running kernel's profile: options from its config (first readable of ``paths``,
    default :func:`config_files`), else probed; algorithms probed. ``nl``: a transport to
    probe with (default: a scratch namespace of the running kernel)."""
    own = nl is None
    nl = RealNetns() if own else nl
    try:
        present = probe_algorithms(nl)
        text, path = read_config(config_files() if paths is None else paths)
        if text is not None:
            values = kconfig.parse_config_values(text)
            names = [n for n, o in kconfig.OPTIONS.items() if not o.algorithms]
            options = {n: values.get(n, "n") not in ("n", "") for n in names}
            modular = [n for n in names if values.get(n) == "m"]
            if modular:         # =m: only a probe says whether the module can be loaded here
                probed = probe_options(nl, present)
                options.update({n: probed[n] for n in modular})
            source = path
        else:
            options, source = probe_options(nl, present), "probe"
        options.update(crypto_options(present))
        missing = frozenset(n for n, ok in present.items() if not ok)
        return HostProfile(options, missing, source)
    finally:
        if own:
            nl.close()


def can_probe() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


@functools.lru_cache(maxsize=None)
def _host_profile() -> HostProfile:
    return read_host_profile()


def host_profile() -> HostProfile:
    """The running kernel's profile, read once per test session (root and ip needed: the
    tests that compare with the kernel need them anyway)."""
    from tests.conftest import require
    require(can_probe(), "needs root and iproute2 to read the running kernel's profile")
    return _host_profile()


def needs_kernel(*options: str) -> None:
    """Skip a test whose comparison needs the running kernel to have ``options`` (e.g. the
    attributes of a veth): on a kernel without them both sides only refuse, which the
    line-by-line tests compare already. Not a missing tool, so a skip under CI too."""
    import pytest
    missing = [o for o in options if not host_profile().options[o]]
    if missing:
        pytest.skip("the running kernel was built without "
                    + ", ".join(f"CONFIG_{o}" for o in missing) + ": nothing to compare")


@functools.lru_cache(maxsize=None)
def _topology_path() -> str:
    d = tempfile.mkdtemp(prefix="xfrmd-kconfig-")
    path = os.path.join(d, "host.toml")
    with open(path, "w") as f:
        f.write("# `bare` (a namespace as ip netns add makes it) built like the running kernel\n"
                + _host_profile().kernel_table() + '\n[[netns]]\nname = "default"\n')
    import atexit
    atexit.register(shutil.rmtree, d, True)
    return path


def host_topology() -> str:
    """A topology file: ``bare``, with the running kernel's options (for ``xfrmd run``)."""
    host_profile()
    return _topology_path()


def emulated_kernel():
    """A fresh sans-IO kernel (manual clock, seed 1) built like the running kernel."""
    from xfrmd.clock import ManualClock
    from xfrmd.kernel import Kernel
    k = Kernel(ManualClock(), seed=1)
    host_profile().apply(k)
    return k
