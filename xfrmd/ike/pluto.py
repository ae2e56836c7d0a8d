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
import time

from .daemon import Daemon


def libreswan_dir() -> str:
    return os.environ.get("XFRMD_LIBRESWAN_DIR") or os.path.expanduser(
        "~/.cache/xfrmd/libreswan")


def _libexec() -> str:
    return os.path.join(libreswan_dir(), "usr", "libexec", "ipsec")


def available() -> bool:
    return os.access(os.path.join(_libexec(), "pluto"), os.X_OK)


class Pluto(Daemon):
    def __init__(self, pair, side: str, workdir: str, env: dict | None = None, *,
                 conn_type: str = "tunnel", nic_offload: str = "no",
                 salifetime: int = 0, extra: str = "", esp: str = "aes128-sha2_256",
                 pluto: str | None = None, userland: str | None = None):
        """``pluto``: the daemon, an install prefix or a build tree; ``userland``: a userland
        name or root directory (both checked here, before anything starts)."""
        from .install import pluto_install
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
        life = f"\tsalifetime={salifetime}s\n" if salifetime else ""
        # libreswan 5 replaced ikev2= (and warns about it) by keyexchange=
        ikev2 = "keyexchange=ikev2" if (self.install.major or 4) >= 5 else "ikev2=yes"
        with open(self.conf, "w") as f:
            f.write(textwrap.dedent(f"""\
                config setup
                \tlogfile={self.log}
                \tlogappend=no
                \tplutodebug=all
                \tdumpdir={self.run}

                conn peer
                \tauthby=secret
                \tleft={me}
                \tright={them}
                \tleftupdown=/bin/true
                \t{ikev2}
                \tike=aes128-sha2_256-modp2048
                \tesp={esp}
                \ttype={conn_type}
                \tnic-offload={nic_offload}
                \tauto=ignore
                """) + life + extra)
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
        self.proc = subprocess.Popen(self._wrap(cmd), env=self._env, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "stderr"), "w"))
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.ctl):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pluto did not start:\n{self.stderr()}")
            time.sleep(0.05)
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
