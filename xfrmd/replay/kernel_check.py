"""``xfrmd replay --kernel``: before a script runs on the running kernel, say what that kernel
was built without (its ``.config``: /proc/config.gz or /boot/config-RELEASE) and which lines
of the script will therefore answer differently from xfrmd's default, fullest kernel — so a
diff against a golden file recorded on xfrmd is not read as noise. The same options switched
off in xfrmd (``xfrmd ctl kconfig set``, or a topology's ``[kernel]`` table) compare like
with like."""
from __future__ import annotations

import gzip
import os

from .. import kconfig
from .args import matches


def config_files() -> tuple[str, ...]:
    return ("/proc/config.gz", f"/boot/config-{os.uname().release}")


def host_lacks(paths=None) -> tuple[set[str] | None, str | None]:
    """(the profile's options the running kernel was built without, the file read), or
    (None, None) when no kernel config is readable."""
    for path in paths or config_files():
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as f:
                text = f.read()
        except OSError:
            continue
        present = kconfig.from_config(kconfig.parse_config(text))
        return {n for n, on in present.items() if not on}, path
    return None, None


def line_needs(words: list[str]) -> set[str]:
    """The build options one `ip` command line depends on."""
    if words[:1] == ["ip"]:
        words = words[1:]
    needs: set[str] = set()
    if not words:
        return needs
    if matches(words[0], "link") and "type" in words:
        kind = words[words.index("type") + 1] if words.index("type") + 1 < len(words) else ""
        if kind in kconfig.LINK_KINDS:
            needs.add(kconfig.LINK_KINDS[kind])
    if matches(words[0], "xfrm"):
        v6 = any(":" in w for w in words)
        if "proto" in words and words.index("proto") + 1 < len(words):
            proto = {"esp": 50, "ah": 51, "comp": 108, "route2": 43, "hao": 60}.get(
                words[words.index("proto") + 1])
            if proto in kconfig.XFRM_TYPES:
                needs.add(kconfig.XFRM_TYPES[proto][1 if v6 else 0])
        needs.update(kconfig.ALGORITHM_OPTION[w] for w in words
                     if w in kconfig.ALGORITHM_OPTION)
        if "offload" in words:
            needs.add("XFRM_OFFLOAD")
        if "iptfs" in words:
            needs.add("XFRM_IPTFS")
    return needs


def report(script: str, lines: list[tuple[int, list[str], str]], lacks: set[str] | None,
           path: str | None) -> list[str]:
    """The lines to print before replaying on the kernel (empty when nothing will differ)."""
    if lacks is None:
        return [f"xfrmd replay: cannot tell what this kernel was built without (no readable "
                f"{' or '.join(config_files())}); lines may differ from xfrmd for that reason"]
    affected = [(n, sorted(line_needs(words) & lacks)) for n, words, _ in lines]
    affected = [(n, opts) for n, opts in affected if opts]
    if not affected:
        return []
    missing = sorted({o for _, opts in affected for o in opts})
    out = [f"xfrmd replay: this kernel ({path}) was built without {', '.join(missing)}; "
           "these lines will answer differently from xfrmd's default kernel:"]
    out += [f"  {script}:{n}: needs {', '.join(opts)}" for n, opts in affected]
    out.append("xfrmd replay: to compare like with like, build xfrmd the same way: xfrmd ctl "
               f"kconfig set {' '.join(o + '=n' for o in missing)}")
    return out
