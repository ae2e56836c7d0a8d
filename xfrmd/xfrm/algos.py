"""The algorithm tables of net/xfrm/xfrm_algo.c and what the crypto API accepts for them.

``xfrm_find_algo`` semantics: AUTH / CRYPT / COMP match the canonical name or the ``compat``
alias (exact, case-sensitive); AEAD matches the canonical name only *and* the ICV length, so
``rfc4106(gcm(aes))`` has three entries (64, 96, 128 bits). The stored and echoed name is always
the canonical one. xfrm itself never checks key lengths: the crypto ``setkey`` in the type's
``init_state`` does (see :mod:`xfrmd.xfrm.types`), so the key sizes the emulated crypto API
accepts live here too (in bytes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from .. import kconfig
from .globals import KEY as XFRM_GLOBALS
from .globals import xfrm_globals

if TYPE_CHECKING:
    from ..kernel import Kernel


@dataclass(frozen=True)
class AlgoDesc:
    """``struct xfrm_algo_desc`` plus the emulated crypto API's rules for it."""
    name: str
    compat: str | None = None
    icv_truncbits: int = 0       # auth: default truncation; aead: the entry's ICV length
    icv_fullbits: int = 0        # auth: digest size
    geniv: str | None = None     # crypt/aead IV generator template
    keys: frozenset[int] | None = None  # key sizes (bytes) setkey accepts; None = any length
    threshold: int = 0           # comp: minimum payload to compress


def _k(*sizes: int) -> frozenset[int]:
    return frozenset(sizes)


_AES = (16, 24, 32)

# xfrm_aead_list
AEAD = (
    AlgoDesc("rfc4106(gcm(aes))", icv_truncbits=64, geniv="seqiv", keys=_k(*(k + 4 for k in _AES))),
    AlgoDesc("rfc4106(gcm(aes))", icv_truncbits=96, geniv="seqiv", keys=_k(*(k + 4 for k in _AES))),
    AlgoDesc("rfc4106(gcm(aes))", icv_truncbits=128, geniv="seqiv", keys=_k(*(k + 4 for k in _AES))),
    AlgoDesc("rfc4309(ccm(aes))", icv_truncbits=64, geniv="seqiv", keys=_k(*(k + 3 for k in _AES))),
    AlgoDesc("rfc4309(ccm(aes))", icv_truncbits=96, geniv="seqiv", keys=_k(*(k + 3 for k in _AES))),
    AlgoDesc("rfc4309(ccm(aes))", icv_truncbits=128, geniv="seqiv", keys=_k(*(k + 3 for k in _AES))),
    AlgoDesc("rfc4543(gcm(aes))", icv_truncbits=128, geniv="seqiv", keys=_k(*(k + 4 for k in _AES))),
    AlgoDesc("rfc7539esp(chacha20,poly1305)", icv_truncbits=128, geniv="seqiv", keys=_k(36)),
)

# xfrm_aalg_list (HMAC accepts any key length; the MACs built on AES do not)
AUTH = (
    AlgoDesc("digest_null", icv_truncbits=0, icv_fullbits=0),
    AlgoDesc("hmac(md5)", "md5", 96, 128),
    AlgoDesc("hmac(sha1)", "sha1", 96, 160),
    AlgoDesc("hmac(sha256)", "sha256", 96, 256),
    AlgoDesc("hmac(sha384)", None, 192, 384),
    AlgoDesc("hmac(sha512)", None, 256, 512),
    AlgoDesc("hmac(rmd160)", "rmd160", 96, 160),
    AlgoDesc("xcbc(aes)", None, 96, 128, keys=_k(16)),
    AlgoDesc("cmac(aes)", None, 96, 128, keys=_k(*_AES)),
    AlgoDesc("hmac(sm3)", "sm3", 256, 256),
)

# xfrm_ealg_list
CRYPT = (
    AlgoDesc("ecb(cipher_null)", "cipher_null"),
    AlgoDesc("cbc(des)", "des", geniv="echainiv", keys=_k(8)),
    AlgoDesc("cbc(des3_ede)", "des3_ede", geniv="echainiv", keys=_k(24)),
    AlgoDesc("cbc(cast5)", "cast5", geniv="echainiv", keys=_k(*range(5, 17))),
    AlgoDesc("cbc(blowfish)", "blowfish", geniv="echainiv", keys=_k(*range(4, 57))),
    AlgoDesc("cbc(aes)", "aes", geniv="echainiv", keys=_k(*_AES)),
    AlgoDesc("cbc(serpent)", "serpent", geniv="echainiv", keys=_k(*range(0, 33))),
    AlgoDesc("cbc(camellia)", "camellia", geniv="echainiv", keys=_k(*_AES)),
    AlgoDesc("cbc(twofish)", "twofish", geniv="echainiv", keys=_k(*_AES)),
    AlgoDesc("rfc3686(ctr(aes))", None, geniv="seqiv", keys=_k(*(k + 4 for k in _AES))),
    AlgoDesc("cbc(sm4)", "sm4", geniv="echainiv", keys=_k(16)),
)

# xfrm_calg_list
COMP = (
    AlgoDesc("deflate", threshold=90),
    AlgoDesc("lzs", threshold=90),
    AlgoDesc("lzjh", threshold=50),
)


def _index(table: Iterable[AlgoDesc]) -> dict[str, AlgoDesc]:
    out: dict[str, AlgoDesc] = {}
    for d in table:  # first matching entry wins, as in the linear scan
        out.setdefault(d.name, d)
        if d.compat:
            out.setdefault(d.compat, d)
    return out


_AUTH_BY_NAME = _index(AUTH)
_CRYPT_BY_NAME = _index(CRYPT)
_COMP_BY_NAME = _index(COMP)
AEAD_BY_NAME_ICV = {(d.name, d.icv_truncbits): d for d in AEAD}

# Names the emulated crypto API lacks in every kernel of this process (tests); one kernel's
# own set is its ``XfrmGlobals.unavailable_algos`` (``xfrmd ctl crypto-alg off NAME``), and its
# profile's CRYPTO_* options say which were built (xfrmd.kconfig). A missing
# algorithm makes the lookup fail as the crypto probe does: ENOSYS.
UNAVAILABLE: set[str] = set()


def _avail(d: AlgoDesc | None, kernel: Kernel | None = None) -> AlgoDesc | None:
    if d is None:
        return None
    name = d.name
    if name in UNAVAILABLE:
        return None
    if kernel is not None:
        # xfrm_globals(kernel).unavailable_algos and kconfig.algorithm_built, inline (every
        # NEWSA asks; the drivers table holds objects: xfrm_globals casts)
        if name in kernel.drivers[XFRM_GLOBALS].unavailable_algos:  # type: ignore[attr-defined]
            return None
        opt = kconfig.ALGORITHM_OPTION.get(name)
        if opt is not None:
            cfg = getattr(kernel, "kconfig", None)      # kconfig.enabled
            if cfg is not None and not cfg.values[opt]:
                return None
    return d


def aalg_get_byname(name: str, kernel: Kernel | None = None) -> AlgoDesc | None:
    """``xfrm_aalg_get_byname(name, probe=1)``."""
    return _avail(_AUTH_BY_NAME.get(name), kernel)


def ealg_get_byname(name: str, kernel: Kernel | None = None) -> AlgoDesc | None:
    """``xfrm_ealg_get_byname(name, probe=1)``."""
    return _avail(_CRYPT_BY_NAME.get(name), kernel)


def calg_get_byname(name: str, kernel: Kernel | None = None) -> AlgoDesc | None:
    """``xfrm_calg_get_byname(name, probe=1)``."""
    return _avail(_COMP_BY_NAME.get(name), kernel)


def aead_get_byname(name: str, icv_len: int, kernel: Kernel | None = None) -> AlgoDesc | None:
    """``xfrm_aead_get_byname(name, icv_len, probe=1)``: canonical name and ICV length."""
    return _avail(AEAD_BY_NAME_ICV.get((name, icv_len)), kernel)


def canonical(name: str) -> str | None:
    """The table name for ``name`` (itself or a compat alias), in any class."""
    for table in (_AUTH_BY_NAME, _CRYPT_BY_NAME, _COMP_BY_NAME):
        if name in table:
            return table[name].name
    return name if any(n == name for n, _ in AEAD_BY_NAME_ICV) else None


def set_available(kernel: Kernel, names: Iterable[str], available: bool) -> None:
    """Load or unload crypto algorithms (canonical names) in one emulated kernel."""
    g = xfrm_globals(kernel)
    cur = set(g.unavailable_algos)
    (cur.difference_update if available else cur.update)(names)
    g.unavailable_algos = frozenset(cur)


def c_name(raw: bytes) -> str:
    """``alg_name`` as the kernel reads it: up to the first NUL (byte 63 forced to NUL)."""
    raw = raw[:63]
    n = raw.find(b"\0")
    return (raw if n < 0 else raw[:n]).decode("latin-1")


# c_name of the 64-byte alg_name fields seen lately (a key manager sends the same few)
NAMES: dict[bytes, str] = {}


def c_name_seen(raw: bytes) -> str:
    """:func:`c_name` of a whole 64-byte ``alg_name``, remembered (bounded: full, the cache
    starts again empty). Callers try ``NAMES.get(raw)`` first."""
    name = c_name(raw)
    if len(NAMES) >= 256:
        NAMES.clear()
    NAMES[raw] = name
    return name
