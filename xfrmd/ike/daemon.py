"""What every daemon wrapper shares."""
from __future__ import annotations

import subprocess


class Daemon:
    proc: subprocess.Popen | None = None

    def stop(self) -> None:
        """SIGTERM (the daemon tidies its SAs and policies away), SIGKILL after 10 s."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
