"""sd_notify without libsystemd, against a fake $NOTIFY_SOCKET (a unix datagram socket this test binds)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.systemd import SystemdNotifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def test_messages_reach_the_socket_one_datagram_each(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    notifier.ready("standby")
    notifier.watchdog()
    notifier.stopping()
    assert [sock.recv(4096).decode() for _ in range(3)] == [
        "READY=1\nSTATUS=standby",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=stopping",
    ]


def test_the_abstract_namespace_is_spelled_with_an_at_sign() -> None:
    name = f"ats-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        SystemdNotifier(f"@{name}").watchdog()
        assert sock.recv(64) == b"WATCHDOG=1"


def test_without_systemd_nothing_is_sent_and_a_dead_socket_is_only_logged(tmp_path: Path) -> None:
    assert not SystemdNotifier.from_env({}).enabled
    SystemdNotifier.from_env({}).watchdog()  # no socket, no error
    gone = SystemdNotifier(str(tmp_path / "nobody-listens"))
    gone.watchdog()  # logged, not raised: the monitor keeps running
    gone.watchdog()
