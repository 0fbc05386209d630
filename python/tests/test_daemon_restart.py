"""Daemon restart with the Python client (docs/reliability.md §6): when
kbusd stops or dies, every call on an open Ksock raises OSError at once
(ECONNRESET or EPIPE), opening raises ENOENT, and once kbusd is back on the
same directory new Ksocks work."""

import errno
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import kbusd_path
from kbus import Ksock, Message

GONE = (errno.ECONNRESET, errno.EPIPE)


def start(d):
    proc = subprocess.Popen([kbusd_path(), '--devices', '1', '--dir', d],
                            stdin=subprocess.DEVNULL)
    sock = os.path.join(d, 'kbus0')
    deadline = time.monotonic() + 10
    while True:   # bounded wait for the socket to accept
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(sock)   # no HELLO: no Ksock id is used up
            return proc
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail('kbusd did not start in %s' % d)
            time.sleep(0.005)


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGKILL])
def test_calls_fail_at_once_and_clients_reopen(sig):
    d = tempfile.mkdtemp(prefix='kbuspy-restart-')
    old = os.environ.get('KBUS_DIR')
    os.environ['KBUS_DIR'] = d
    proc = start(d)
    try:
        k = Ksock(0)
        k.bind('$.Restart')
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == (0 if sig == signal.SIGTERM else -sig)
        t0 = time.monotonic()
        for call in (lambda: k.send_msg(Message('$.Restart')),
                     lambda: k.read_next_msg(),
                     lambda: k.wait_for_msg(1),
                     lambda: k.bind('$.Again')):
            with pytest.raises(OSError) as e:
                call()
            assert e.value.errno in GONE
        with pytest.raises(OSError) as e:
            Ksock(0)
        assert e.value.errno == errno.ENOENT
        assert time.monotonic() - t0 < 3
        proc = start(d)
        k2 = Ksock(0)
        assert k2.ksock_id() == 1
        k2.bind('$.Restart')
        k2.send_msg(Message('$.Restart', b'again'))
        assert k2.read_next_msg().data == b'again'
        k2.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        if old is None:
            os.environ.pop('KBUS_DIR', None)
        else:
            os.environ['KBUS_DIR'] = old
        shutil.rmtree(d, ignore_errors=True)
