"""The emulated kernel's build configuration: which optional subsystems it was "built" with.

A real kernel answers differently depending on its ``.config``: without CONFIG_INET_ESP a
NEWSA of proto ESP fails at ``xfrm_get_type`` ("Requested type not found"), without
CONFIG_DUMMY ``ip link add … type dummy`` is EOPNOTSUPP "Unknown device type", without
CONFIG_IPV6_MROUTE ``ip -6 netconf`` has no mc_forwarding. The profile here lets one xfrmd
answer as any of those kernels. Every option defaults to on — the fullest kernel, what the
emulator models when nobody says otherwise.

Set in a topology (``[kernel]`` table, docs/topology.md), at run time with
``xfrmd ctl kconfig set NAME=y|n``, or in-process with :func:`configure`. The model asks
:func:`enabled` at each place the behaviour differs; the options and what they change are in
:data:`OPTIONS`. Turning an option off turns off what depends on it (kconfig ``depends on``);
turning one on whose dependency is off is refused, as menuconfig would not offer it.

:func:`parse_config` reads a kernel ``.config`` (``/proc/config.gz``) into the same names, so
tests can make the emulated kernel match the machine's (tests/differential/kconfig_host.py).
"""
from __future__ import annotations

import errno as E
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    help: str
    depends: str | None = None
    algorithms: tuple[str, ...] = ()     # xfrm_algo.c names this crypto option provides


OPTIONS: dict[str, Option] = {
    # multicast routing (net/ipv4/ipmr.c, net/ipv6/ip6mr.c)
    "IP_MROUTE": Option("IPv4 multicast routing (ipmr)"),
    "IP_MROUTE_MULTIPLE_TABLES": Option(
        "ipmr policy routing: the RTNL_FAMILY_IPMR rule `32767: from all lookup default` of "
        "every namespace (ipmr_rules_init)", "IP_MROUTE"),
    "IPV6_MROUTE": Option("IPv6 multicast routing (ip6mr): inet6 netconf reports "
                          "mc_forwarding (inet6_netconf_fill_devconf)"),
    "IPV6_MROUTE_MULTIPLE_TABLES": Option(
        "ip6mr policy routing: the RTNL_FAMILY_IP6MR rule `32767: from all lookup main` "
        "(ip6mr_rules_init)", "IPV6_MROUTE"),
    # xfrm
    "XFRM_OFFLOAD": Option("IPsec offload core (xfrm_device.c): without it XFRMA_OFFLOAD_DEV "
                           "is accepted and ignored (the xfrm_dev_state_add / "
                           "xfrm_dev_policy_add stubs), nothing is offloaded"),
    "XFRM_IPTFS": Option("xfrm_iptfs (IP-TFS mode callbacks): without it an IP-TFS-mode SA "
                         "is kept without its IP-TFS settings (no mode_cbs->user_init) and "
                         "dumps carry no XFRMA_IPTFS_* attributes"),
    "INET_ESP": Option("esp4: the ESP xfrm type for IPv4 SAs"),
    "INET6_ESP": Option("esp6: the ESP xfrm type for IPv6 SAs"),
    "INET_AH": Option("ah4: the AH xfrm type for IPv4 SAs"),
    "INET6_AH": Option("ah6: the AH xfrm type for IPv6 SAs"),
    "INET_IPCOMP": Option("ipcomp4: the IPComp xfrm type for IPv4 SAs"),
    "INET6_IPCOMP": Option("ipcomp6: the IPComp xfrm type for IPv6 SAs"),
    "INET_XFRM_TUNNEL": Option("xfrm4_tunnel: the IPIP xfrm type (IPComp tunnel mode)"),
    "INET6_XFRM_TUNNEL": Option("xfrm6_tunnel: the IPv6-in-IPv6 xfrm type (IPComp tunnel mode)"),
    # link kinds (rtnl_link_ops)
    "DUMMY": Option("link kind dummy"),
    "BONDING": Option("link kind bond"),
    "VETH": Option("link kind veth"),
    "BRIDGE": Option("link kind bridge"),
    "VXLAN": Option("link kind vxlan"),
    "VLAN_8021Q": Option("link kind vlan"),
    "NETDEVSIM": Option("netdevsim: /sys/bus/netdevsim and the link kind that refuses "
                        "`ip link add` (nsim_validate)"),
    # the crypto API (what xfrm_*_get_byname's probe finds)
    "CRYPTO_NULL": Option("ecb(cipher_null), digest_null",
                          algorithms=("ecb(cipher_null)", "digest_null")),
    "CRYPTO_MD5": Option("hmac(md5)", algorithms=("hmac(md5)",)),
    "CRYPTO_SHA1": Option("hmac(sha1)", algorithms=("hmac(sha1)",)),
    "CRYPTO_SHA256": Option("hmac(sha256)", algorithms=("hmac(sha256)",)),
    "CRYPTO_SHA512": Option("hmac(sha384), hmac(sha512)",
                            algorithms=("hmac(sha384)", "hmac(sha512)")),
    "CRYPTO_RMD160": Option("hmac(rmd160)", algorithms=("hmac(rmd160)",)),
    "CRYPTO_XCBC": Option("xcbc(aes)", algorithms=("xcbc(aes)",)),
    "CRYPTO_CMAC": Option("cmac(aes)", algorithms=("cmac(aes)",)),
    "CRYPTO_SM3_GENERIC": Option("hmac(sm3)", algorithms=("hmac(sm3)",)),
    "CRYPTO_AES": Option("cbc(aes)", algorithms=("cbc(aes)",)),
    "CRYPTO_CTR": Option("rfc3686(ctr(aes))", algorithms=("rfc3686(ctr(aes))",)),
    "CRYPTO_DES": Option("cbc(des), cbc(des3_ede)", algorithms=("cbc(des)", "cbc(des3_ede)")),
    "CRYPTO_CAST5": Option("cbc(cast5)", algorithms=("cbc(cast5)",)),
    "CRYPTO_BLOWFISH": Option("cbc(blowfish)", algorithms=("cbc(blowfish)",)),
    "CRYPTO_SERPENT": Option("cbc(serpent)", algorithms=("cbc(serpent)",)),
    "CRYPTO_CAMELLIA": Option("cbc(camellia)", algorithms=("cbc(camellia)",)),
    "CRYPTO_TWOFISH": Option("cbc(twofish)", algorithms=("cbc(twofish)",)),
    "CRYPTO_SM4_GENERIC": Option("cbc(sm4)", algorithms=("cbc(sm4)",)),
    "CRYPTO_GCM": Option("rfc4106(gcm(aes)), rfc4543(gcm(aes))",
                         algorithms=("rfc4106(gcm(aes))", "rfc4543(gcm(aes))")),
    "CRYPTO_CCM": Option("rfc4309(ccm(aes))", algorithms=("rfc4309(ccm(aes))",)),
    "CRYPTO_CHACHA20POLY1305": Option("rfc7539esp(chacha20,poly1305)",
                                      algorithms=("rfc7539esp(chacha20,poly1305)",)),
    "CRYPTO_DEFLATE": Option("deflate (IPComp)", algorithms=("deflate",)),
}

# ``ip link add … type KIND`` → the option that registers its rtnl_link_ops
LINK_KINDS = {"dummy": "DUMMY", "bond": "BONDING", "veth": "VETH", "bridge": "BRIDGE",
              "vxlan": "VXLAN", "vlan": "VLAN_8021Q",
              "netdevsim": "NETDEVSIM"}
# xfrm type (IPPROTO_*) → the option registering it for (AF_INET, AF_INET6)
XFRM_TYPES = {50: ("INET_ESP", "INET6_ESP"), 51: ("INET_AH", "INET6_AH"),
              108: ("INET_IPCOMP", "INET6_IPCOMP"),
              4: ("INET_XFRM_TUNNEL", "INET_XFRM_TUNNEL"),
              41: ("INET6_XFRM_TUNNEL", "INET6_XFRM_TUNNEL")}
ALGORITHM_OPTION = {a: name for name, o in OPTIONS.items() for a in o.algorithms}


class KernelConfig:
    """One kernel's options (every one present, True = built in)."""

    def __init__(self, values: dict[str, bool] | None = None):
        self.values = {name: True for name in OPTIONS}
        for name, on in (values or {}).items():
            self.set(name, on)

    def enabled(self, name: str) -> bool:
        return self.values[name]

    def copy(self) -> "KernelConfig":
        c = KernelConfig()
        c.values = dict(self.values)
        return c

    def set(self, name: str, on: bool) -> None:
        """Set one option; ValueError for an unknown name or an unmet dependency. Off also
        turns off what depends on it."""
        name = normalise_name(name)
        opt = OPTIONS[name]
        if on and opt.depends and not self.values[opt.depends]:
            raise ValueError(f"CONFIG_{name} depends on CONFIG_{opt.depends}, which is off")
        self.values[name] = bool(on)
        if not on:
            for child, o in OPTIONS.items():
                if o.depends == name:
                    self.values[child] = False

    def update(self, values: dict[str, bool]) -> None:
        """Several options at once, parents before their dependants (so a table may name a
        child before its parent)."""
        items = sorted(((normalise_name(k), v) for k, v in values.items()),
                       key=lambda kv: OPTIONS[kv[0]].depends is not None)
        for name, on in items:
            self.set(name, on)

    def off(self) -> list[str]:
        return [n for n, v in self.values.items() if not v]

    def show(self) -> str:
        """``.config`` lines, as /proc/config.gz writes them."""
        return "".join(f"CONFIG_{n}=y\n" if v else f"# CONFIG_{n} is not set\n"
                       for n, v in self.values.items())


def normalise_name(name: str) -> str:
    """``CONFIG_IP_MROUTE`` or ``IP_MROUTE`` → ``IP_MROUTE``; ValueError if unknown."""
    n = name.strip()
    n = n[7:] if n.startswith("CONFIG_") else n
    if n not in OPTIONS:
        raise ValueError(f"unknown kernel option {name!r} (xfrmd ctl kconfig show lists them)")
    return n


def parse_value(value) -> bool:
    """A table or command-line value: true/false, y/m/n (m: a module the kernel loads on
    demand, as present as y)."""
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in ("y", "m", "yes", "on", "true", "1"):
        return True
    if v in ("n", "no", "off", "false", "0"):
        return False
    raise ValueError(f"kernel option value {value!r} is not y, m or n")


def of(kernel) -> KernelConfig:
    """The kernel's profile, created (all on) on first use."""
    cfg = getattr(kernel, "kconfig", None)
    if cfg is None:
        cfg = KernelConfig()
        kernel.kconfig = cfg
    return cfg


def enabled(kernel, name: str) -> bool:
    """Was ``kernel`` built with CONFIG_<name>? (No kernel: the full default.)"""
    cfg = getattr(kernel, "kconfig", None) if kernel is not None else None
    return True if cfg is None else cfg.values[name]


def configure(kernel, values: dict) -> KernelConfig:
    """Apply ``{name: bool|"y"|"n"}`` to the kernel's profile."""
    cfg = of(kernel)
    cfg.update({k: parse_value(v) for k, v in values.items()})
    return cfg


def link_kind_built(kernel, kind: str) -> bool:
    opt = LINK_KINDS.get(kind)
    return opt is None or enabled(kernel, opt)


def xfrm_type_built(kernel, proto: int, family: int) -> bool:
    opts = XFRM_TYPES.get(proto)
    if opts is None:
        return True
    return enabled(kernel, opts[1] if family == 10 else opts[0])


def algorithm_built(kernel, name: str) -> bool:
    opt = ALGORITHM_OPTION.get(name)
    return opt is None or enabled(kernel, opt)


_LINE = re.compile(r"^(?:CONFIG_(\w+)=(.*)|# CONFIG_(\w+) is not set)$")


def parse_config_values(text: str) -> dict[str, str]:
    """A kernel ``.config`` (or /proc/config.gz's text): each CONFIG_ symbol's value as
    written (``y``, ``m``, a string or number), ``n`` for ``# CONFIG_X is not set``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if m:
            out[m.group(1) or m.group(3)] = m.group(2) if m.group(1) else "n"
    return out


def parse_config(text: str) -> dict[str, bool]:
    """Every CONFIG_ symbol set to y or m is True, ``is not set`` False (other values —
    strings, numbers — count as set)."""
    return {k: v not in ("n", "") for k, v in parse_config_values(text).items()}


def from_config(symbols: dict[str, bool], names=None) -> dict[str, bool]:
    """The profile's options (or ``names`` of them) as a parsed ``.config`` has them; a
    symbol the file does not mention is off, as Kconfig leaves it."""
    return {n: symbols.get(n, False) for n in (names or OPTIONS)}


# the service op of `xfrmd ctl kconfig show|set` (xfrmd/ctl/kconfig.py)
def kconfig_service(kernel: Any, ns: Any, req: dict[str, Any]) -> dict[str, Any]:
    """``show``: the options as .config text (all, or the ``names`` asked for); ``set``:
    ``values`` {NAME: y|n}, all or nothing."""
    cfg = of(kernel)
    try:
        if req.get("action") == "set":
            values = {normalise_name(k): parse_value(v)
                      for k, v in (req.get("values") or {}).items()}
            trial = cfg.copy()
            trial.update(values)              # an unmet dependency fails before any change
            cfg.values = trial.values
            return {"errno": 0}
        if req.get("action") != "show":
            return {"errno": E.EINVAL, "error": "xfrmd: kconfig show|set"}
        names = [normalise_name(n) for n in req.get("names") or []]
    except ValueError as e:
        return {"errno": E.EINVAL, "error": f"xfrmd: {e}"}
    lines = cfg.show().splitlines(keepends=True)
    if names:
        lines = [ln for ln in lines if any(f"CONFIG_{n}=" in ln or f"CONFIG_{n} " in ln
                                           for n in names)]
    return {"errno": 0, "text": "".join(lines)}

