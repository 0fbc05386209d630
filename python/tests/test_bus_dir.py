"""Where the Python client looks for a bus (docs/protocol.md section 1,
kbus(1) FILES): a user other than root falls back to the system bus
directory (/run/kbus, served by kbusd.service) for a bus that their own
directory ($XDG_RUNTIME_DIR/kbus) does not have; $KBUS_DIR is used as
given; root uses the system directory."""

import errno
import os
import socket

import pytest

import kbus.ksock
from kbus import Ksock
from kbus.ksock import kbus_dir


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    user = tmp_path / 'user' / 'kbus'
    system = tmp_path / 'system'
    user.mkdir(parents=True)
    system.mkdir()
    socks = []
    for path in (user / 'kbus0', system / 'kbus0', system / 'kbus1'):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(path))
        socks.append(s)
    (system / 'kbus3').write_text('not a socket')
    monkeypatch.delenv('KBUS_DIR', raising=False)
    monkeypatch.setenv('XDG_RUNTIME_DIR', str(tmp_path / 'user'))
    monkeypatch.setattr(os, 'geteuid', lambda: 1000)
    monkeypatch.setattr(os, 'getuid', lambda: 1000)
    monkeypatch.setattr(kbus.ksock, 'SYSTEM_KBUS_DIR', str(system))
    yield str(user), str(system)
    for s in socks:
        s.close()


def test_user_falls_back_to_system_per_bus(dirs):
    user, system = dirs
    assert kbus_dir(0) == user        # the user's own bus 0
    assert kbus_dir(1) == system      # only the system has bus 1
    assert kbus_dir(2) == user        # nobody has it: the user's directory
    assert kbus_dir(3) == user        # a plain file is no bus
    assert kbus_dir() == user         # no bus number: no fallback


def test_kbus_dir_env_is_used_without_fallback(dirs, monkeypatch):
    monkeypatch.setenv('KBUS_DIR', '/some/where')
    assert kbus_dir(1) == '/some/where'


def test_root_uses_the_system_directory(dirs, monkeypatch):
    user, system = dirs
    monkeypatch.setattr(os, 'geteuid', lambda: 0)
    assert kbus_dir(0) == system


def test_ksock_opens_the_system_bus_by_fallback(dirs):
    user, system = dirs
    # Nobody listens behind the system socket: the open goes there (its
    # name says so) and fails with ENOENT as for a bus with no daemon.
    with pytest.raises(OSError) as e:
        Ksock(1)
    assert e.value.errno == errno.ENOENT
    assert e.value.filename == os.path.join(system, 'kbus1')
