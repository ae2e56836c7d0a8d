"""What every daemon wrapper shares."""
from __future__ import annotations

import os
import subprocess
import time
from typing import Callable


class Daemon:
    proc: subprocess.Popen[bytes] | None = None
    dir: str                    # the daemon's own directory (configuration, logs)

    @property
    def _env(self) -> dict[str, str]:
        """The environment the daemon and its tools run in (the shim, the emulated kernel)."""
        raise NotImplementedError

    def _spawn(self, argv: list[str], ready: str, timeout: float,
               failed: Callable[[], str]) -> None:
        """Start the daemon (its stderr to ``stderr`` in its directory) and wait until the
        file ``ready`` (its control socket) exists; RuntimeError with ``failed()`` when it
        exits or ``timeout`` seconds pass first."""
        with open(os.path.join(self.dir, "stderr"), "w") as err:    # the daemon has its own fd
            self.proc = subprocess.Popen(argv, env=self._env, stdout=subprocess.DEVNULL,
                                         stderr=err)
        deadline = time.monotonic() + timeout
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(failed())
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (the daemon tidies its SAs and policies away), SIGKILL after 10 s."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
