"""Daemon restart with the Python client (docs/reliability.md §6): when
kbusd stops or dies, every call on an open Ksock raises kbus.DaemonGone at
once (a ConnectionResetError, errno ECONNRESET -- never EPIPE, which is
KBUS's "not the replier you named"), opening raises ENOENT, and once kbusd
is back on the same directory new Ksocks work."""

import errno
import os
import shutil
import signal
import tempfile
import time

import pytest

from conftest import kbusd_path, start_ready
from kbus import DaemonGone, Ksock, Message


def start(d):
    # Readiness (docs/reliability.md section 7), never a socket file.
    proc, why = start_ready(kbusd_path(), ['--devices', '1', '--dir', d])
    if proc is None:
        pytest.fail('kbusd did not start in %s: %s' % (d, why))
    return proc


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
            with pytest.raises(DaemonGone) as e:
                call()
            assert e.value.errno == errno.ECONNRESET
            assert isinstance(e.value, ConnectionResetError)
            assert 'kbusd went away' in str(e.value)
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
