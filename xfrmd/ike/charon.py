"""strongSwan's charon driven through swanctl: Debian's strongswan-charon 5.9.8 on the host,
or the one of a userland (``userland="trixie-strongswan"``: 6.0.1) or of the user's own build
(``charon=PATH``), see :mod:`xfrmd.ike.install`."""
from __future__ import annotations

import os
import shutil
import subprocess
import textwrap

from .daemon import Daemon
from .install import CHARON, charon_install
PLUGINS = ("random nonce openssl aes sha1 sha2 hmac gmp pem pkcs1 x509 pubkey kdf "
           "kernel-netlink socket-default vici updown")


def available() -> bool:
    return os.path.exists(CHARON) and shutil.which("swanctl") is not None


def child_section(name: str, keys: dict, limits: dict) -> str:
    """One ``children.<name>`` section of swanctl.conf: ``keys`` are its own key names
    (``rekey_time`` / ``life_time`` in seconds), ``limits`` the volume limits."""
    lines = []
    for k, v in {**{k: v for k, v in keys.items() if k != "limits"}, **limits}.items():
        if k in ("rekey_time", "life_time") and isinstance(v, int):
            v = f"{v}s"
        lines.append(f"        {k} = {v}\n")
    return f"      {name} {{\n" + "".join(lines) + "      }"


def _child_keys(c: dict) -> dict:
    """A child's keys, with ``options`` (any further swanctl child keys, e.g.
    ``{"if_id_in": 42}``) written as keys of their own."""
    return {**{k: v for k, v in c.items() if k != "options"}, **c.get("options", {})}


class Charon(Daemon):
    """One charon in ``side`` of a pair; ``env`` adds the shim's variables (or nothing to
    talk to the real kernel). Config lives in ``workdir``."""

    def __init__(self, pair, side: str, workdir: str, env: dict | None = None, *,
                 mode: str = "tunnel", hw_offload: str = "no", rekey_time: int = 0,
                 life_time: int = 0, esp_proposals: str = "aes128-sha256",
                 proposals: str = "aes128-sha256-modp2048", children: dict | None = None,
                 limits: dict | None = None, conn: dict | None = None,
                 charon: str | None = None, userland: str | None = None, **child):
        """Options are swanctl.conf's own keys: ``proposals`` (the IKE_SA's), and for the
        CHILD_SA ``mode``, ``hw_offload`` (no, yes, auto, packet), ``esp_proposals``,
        ``rekey_time`` and ``life_time`` (seconds), and any other key of a swanctl.conf
        ``children.<name>`` section (``replay_window``, ``start_action``, ``copy_df`` …),
        written into every child. ``children`` gives several CHILD_SAs: name → the same keys
        (plus ``local_ts`` / ``remote_ts``). ``limits`` adds CHILD_SA volume limits to every
        child, swanctl.conf's names: ``{"rekey_bytes": 4000, "life_bytes": 8000,
        "rand_bytes": 0, "rekey_packets": …, "life_packets": …, "rand_packets": …,
        "rand_time": …}``. ``conn`` adds keys of the ``connections.<conn>`` section itself
        (``{"encap": "yes"}`` forces UDP encapsulation, ``{"dpd_delay": "2s"}``…).
        ``charon``: the daemon, an install prefix or a build tree;
        ``userland``: a userland name or root directory (both checked here, before anything
        starts)."""
        self.install = charon_install(charon, userland)
        self.pair, self.side = pair, side
        self.dir = os.path.join(workdir, f"charon-{side}")
        os.makedirs(self.dir, exist_ok=True)
        self.stage = os.path.join(workdir, f".stage-charon-{side}")
        if self.install.root:
            os.makedirs(self.stage, exist_ok=True)
        self.env = dict(env or {})
        self.vici = os.path.join(self.dir, "charon.vici")
        self.log = os.path.join(self.dir, "charon.log")
        self.proc: subprocess.Popen | None = None
        peer = "right" if side == "left" else "left"
        me, them = pair.addr[side], pair.addr[peer]
        self.children = children or {"ch": {"mode": mode, "hw_offload": hw_offload}}
        defaults = {"local_ts": me + "/32", "remote_ts": them + "/32",
                    "esp_proposals": esp_proposals, "mode": mode, "hw_offload": hw_offload,
                    "rekey_time": rekey_time, "life_time": life_time, "start_action": "none",
                    **child}
        child_blocks = [child_section(name, {**defaults, **_child_keys(c)}, {**(limits or {}),
                                                                **c.get("limits", {})})
                        for name, c in self.children.items()]
        with open(os.path.join(self.dir, "strongswan.conf"), "w") as f:
            f.write(textwrap.dedent(f"""\
                charon {{
                  load_modular = no
                  load = {PLUGINS}
                  install_routes = no
                  install_virtual_ip = no
                  retransmit_tries = 3
                  retransmit_timeout = 1.0
                  filelog {{
                    charon {{
                      path = {self.log}
                      time_format = %H:%M:%S
                      default = 1
                      knl = 2
                      ike = 2
                      chd = 2
                      flush_line = yes
                    }}
                  }}
                  syslog {{
                    daemon {{ default = -1 }}
                    auth {{ default = -1 }}
                  }}
                  plugins {{
                    vici {{ socket = unix://{self.vici} }}
                  }}
                }}
                swanctl {{
                  socket = unix://{self.vici}
                }}
                """))
        with open(os.path.join(self.dir, "swanctl.conf"), "w") as f:
            f.write("connections {\n  peer {\n"
                    f"    remote_addrs = {them}\n    local_addrs = {me}\n"
                    f"    version = 2\n    proposals = {proposals}\n"
                    + "".join(f"    {k} = {v}\n" for k, v in (conn or {}).items()) +
                    f"    local {{ auth = psk\n id = {me} }}\n"
                    f"    remote {{ auth = psk\n id = {them} }}\n"
                    "    children {\n" + "\n".join(child_blocks) + "\n    }\n  }\n}\n"
                    'secrets {\n  ike-1 { secret = "xfrmd-test-psk-0123456789" }\n}\n')

    @property
    def _env(self) -> dict:
        env = dict(os.environ)
        env.update(self.env)
        env["STRONGSWAN_CONF"] = os.path.join(self.dir, "strongswan.conf")
        return env

    def start(self, timeout: float = 10.0) -> None:
        # a private /run so that two charons do not share /run/charon.pid (a userland's
        # /run is private already)
        charon = self.install.paths["charon"]
        argv = ([charon] if self.install.root else
                ["sh", "-c", f"mount -t tmpfs tmpfs /run && exec {charon}"])
        self._spawn(self._argv(argv), self.vici, timeout,
                    lambda: f"charon did not start:\n{self.logtext()}")
        self.swanctl("--load-all", "--file", os.path.join(self.dir, "swanctl.conf"))

    def _argv(self, argv: list[str]) -> list[str]:
        return self.install.argv(self.pair.exec_argv, self.side, argv, stage=self.stage,
                                 env=self.env, binds=(self.dir,))

    def swanctl(self, *args: str, check: bool = True, timeout: float = 30.0):
        p = subprocess.run(self._argv([self.install.paths["swanctl"], *args, "--uri",
                                       f"unix://{self.vici}"]), env=self._env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode:
            raise RuntimeError(f"swanctl {' '.join(args)} failed: {p.stdout}{p.stderr}")
        return p

    def initiate(self, child: str = "ch", timeout: int = 15):
        return self.swanctl("--initiate", "--child", child, "--timeout", str(timeout),
                            check=False, timeout=timeout + 5)

    def terminate_ike(self, timeout: int = 10):
        return self.swanctl("--terminate", "--ike", "peer", "--timeout", str(timeout),
                            check=False, timeout=timeout + 5)

    def list_sas(self) -> str:
        return self.swanctl("--list-sas", check=False).stdout

    def logtext(self) -> str:
        try:
            return open(self.log).read()
        except OSError:
            return ""

