"""sd_notify(3) without libsystemd: one datagram per message to the unix socket systemd names in $NOTIFY_SOCKET.

Under `Type=notify` the unit is started once the monitor says READY=1; with `WatchdogSec=` systemd restarts it
when WATCHDOG=1 stops arriving, which the supervisor sends from its event loop: a frozen process or a blocked
loop is killed and restarted instead of lingering with a red /livez. Without $NOTIFY_SOCKET (not under systemd)
every call does nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from ats.log import get_logger

log = get_logger(__name__)


class SystemdNotifier:
    def __init__(self, address: str | None) -> None:
        """`address`: $NOTIFY_SOCKET (a path, or '@name' in the abstract namespace); None: not under systemd."""
        self._address = address
        self._failed = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> SystemdNotifier:
        return cls(environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping")

    def notify(self, *fields: str) -> None:
        """Send one message; a failure is logged once (the monitor runs on without systemd's supervision)."""
        if self._address is None:
            return
        target = "\0" + self._address[1:] if self._address.startswith("@") else self._address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(fields).encode(), target)
        except OSError as exc:
            if not self._failed:
                log.error("cannot notify systemd: its watchdog will restart this process", error=str(exc))
            self._failed = True
            return
        if self._failed:
            log.info("notifying systemd again")
            self._failed = False
