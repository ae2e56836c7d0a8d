"""libreswan's pluto driven through addconn and whack: by default 4.10 from the .deb extracted
by tools/test-all.sh ($XFRMD_LIBRESWAN_DIR, default ~/.cache/xfrmd/libreswan); or the one of a
userland (``userland="trixie-libreswan"``: 5.2) or of the user's own build (``pluto=PATH``),
see :mod:`xfrmd.ike.install`.

The extracted pluto insists on /usr/libexec/ipsec/addconn, so each pluto runs in its own mount
namespace (``ip netns exec`` gives one) with the extracted directory bind-mounted there."""
from __future__ import annotations

import os
import subprocess
import textwrap
import warnings

from .daemon import Daemon
from .install import libreswan_dir, libreswan_libexec, pluto_install  # noqa: F401 (libreswan_dir: re-exported)


def available() -> bool:
    return os.access(os.path.join(libreswan_libexec(), "pluto"), os.X_OK)


# keyword arguments renamed to ipsec.conf's own key names: old name → key
DEPRECATED = {"conn_type": "type"}


def conn_options(options: dict) -> dict:
    """The ``conn`` keys of ipsec.conf from keyword arguments: ``_`` stands for ``-``
    (``nic_offload`` → ``nic-offload``), ``salifetime`` in seconds; a deprecated name
    (``conn_type``) still works, with a DeprecationWarning, and given beside its new name it
    is an error."""
    out: dict = {}
    for name, value in options.items():
        if name in DEPRECATED:
            new = DEPRECATED[name]
            warnings.warn(f"Pluto({name}=…) is deprecated: use {new}=…, ipsec.conf's own key",
                          DeprecationWarning, stacklevel=3)
            if options.get(new) is not None:
                raise TypeError(f"Pluto: give {new}= or its deprecated alias {name}=, not both")
            name = new
        if value is None:
            continue
        key = name.replace("_", "-")
        if key == "salifetime" and isinstance(value, int):
            if not value:
                continue
            value = f"{value}s"
        out[key] = value
    return out


def conn_text(me: str, them: str, ikev2: str, options: dict) -> str:
    """``conn peer`` of the ipsec.conf: fixed keys (addresses, PSK, a no-op updown), then
    the defaults and ``options`` (ipsec.conf key → value; a key given replaces a default)."""
    keys = {"ike": "aes128-sha2_256-modp2048", "esp": "aes128-sha2_256", "type": "tunnel",
            "nic-offload": "no", "auto": "ignore", **options}
    return ("conn peer\n\tauthby=secret\n"
            f"\tleft={me}\n\tright={them}\n\tleftupdown=/bin/true\n\t{ikev2}\n"
            + "".join(f"\t{k}={v}\n" for k, v in keys.items()))


class Pluto(Daemon):
    def __init__(self, pair, side: str, workdir: str, env: dict | None = None, *,
                 type: str | None = None, nic_offload: str = "no",
                 salifetime: int = 0, extra: str = "", esp: str = "aes128-sha2_256",
                 pluto: str | None = None, userland: str | None = None, **conn):
        """Options are ipsec.conf ``conn`` keys with ``_`` for ``-``: ``type`` (tunnel or
        transport), ``nic_offload`` (no, yes, crypto, packet), ``esp``, ``salifetime``
        (seconds), and any other key of libreswan's conn section (``ike``,
        ``replay_window``, ``encapsulation`` …); ``extra`` appends raw lines.
        ``conn_type`` is the deprecated name of ``type``.
        ``pluto``: the daemon, an install prefix or a build tree; ``userland``: a userland
        name or root directory (both checked here, before anything starts)."""
        options = conn_options({"type": type, "nic_offload": nic_offload, "esp": esp,
                                "salifetime": salifetime, **conn})
        self.install = pluto_install(pluto, userland)
        self.pair, self.side = pair, side
        self.dir = os.path.join(workdir, f"pluto-{side}")
        self.stage = os.path.join(workdir, f".stage-pluto-{side}")
        if self.install.root:
            os.makedirs(self.stage, exist_ok=True)
        self.run = os.path.join(self.dir, "run")
        self.nss = os.path.join(self.dir, "nss")
        for d in (self.dir, self.run, self.nss):
            os.makedirs(d, exist_ok=True)
        self.env = dict(env or {})
        self.ctl = os.path.join(self.run, "pluto.ctl")
        self.log = os.path.join(self.dir, "pluto.log")
        self.conf = os.path.join(self.dir, "ipsec.conf")
        self.secrets = os.path.join(self.dir, "ipsec.secrets")
        self.proc: subprocess.Popen | None = None
        peer = "right" if side == "left" else "left"
        me, them = pair.addr[side], pair.addr[peer]
        # libreswan 5 replaced ikev2= (and warns about it) by keyexchange=
        ikev2 = "keyexchange=ikev2" if (self.install.major or 4) >= 5 else "ikev2=yes"
        with open(self.conf, "w") as f:
            f.write(textwrap.dedent(f"""\
                config setup
                \tlogfile={self.log}
                \tlogappend=no
                \tplutodebug=all
                \tdumpdir={self.run}

                """) + conn_text(me, them, ikev2, options) + extra)
        with open(self.secrets, "w") as f:
            f.write(f'{me} {them} : PSK "xfrmd-test-psk-0123456789"\n')
        certutil = [self.install.paths["certutil"], "-N", "-d", f"sql:{self.nss}",
                    "--empty-password"]
        subprocess.run(self.install.argv(lambda side, argv: argv, side, certutil,
                                         stage=self.stage, env=self.env, binds=(self.dir,)),
                       check=True, capture_output=True)

    @property
    def _env(self) -> dict:
        env = dict(os.environ)
        env.update(self.env)
        return env

    def _wrap(self, cmd: str) -> list[str]:
        if self.install.root:           # a userland: its own /usr/libexec/ipsec, private /run
            return self.install.argv(self.pair.exec_argv, self.side, ["sh", "-c", cmd],
                                     stage=self.stage, env=self.env, binds=(self.dir,))
        mounts = "mount -t tmpfs tmpfs /run && "
        libexec = os.path.dirname(self.install.paths["pluto"])
        if libexec.endswith("/usr/libexec/ipsec") and libexec != "/usr/libexec/ipsec":
            # a DESTDIR tree (the extracted .deb): built for /usr, so shown there
            mounts = (f"mkdir -p /usr/libexec/ipsec && mount --bind {libexec} "
                      "/usr/libexec/ipsec && " + mounts)
        return self.pair.exec_argv(self.side, ["sh", "-c", mounts + cmd])

    def start(self, timeout: float = 15.0) -> None:
        pluto = self.install.paths["pluto"]
        cmd = (f"exec {pluto} --nofork --stderrlog --config {self.conf} --rundir {self.run} "
               f"--nssdir {self.nss} --secretsfile {self.secrets} --ipsecdir {self.dir} "
               "--no-dnssec --nhelpers 1")
        self._spawn(self._wrap(cmd), self.ctl, timeout,
                    lambda: f"pluto did not start:\n{self.stderr()}")
        self.tool("addconn", "--ctlsocket", self.ctl, "--config", self.conf, "peer")
        self.whack("--listen")

    def tool(self, name: str, *args: str, check: bool = True, timeout: float = 30.0):
        p = subprocess.run(self._wrap(" ".join([self.install.paths[name], *args])),
                           env=self._env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode:
            raise RuntimeError(f"{name} {' '.join(args)} failed: {p.stdout}{p.stderr}")
        return p

    def whack(self, *args: str, check: bool = True, timeout: float = 30.0):
        return self.tool("whack", "--ctlsocket", self.ctl, *args, check=check, timeout=timeout)

    def initiate(self, timeout: float = 30.0):
        return self.whack("--name", "peer", "--initiate", check=False, timeout=timeout)

    def status(self) -> str:
        return self.whack("--trafficstatus", check=False).stdout

    def stderr(self) -> str:
        try:
            return open(os.path.join(self.dir, "stderr")).read()
        except OSError:
            return ""

    def logtext(self) -> str:
        """pluto logs to stderr (--stderrlog) and, depending on version, to logfile."""
        try:
            text = open(self.log).read()
        except OSError:
            text = ""
        return text + self.stderr()
