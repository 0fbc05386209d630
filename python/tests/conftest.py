"""Shared fixtures for the kbus Python tests.

``kbusd`` starts a private kbusd (``kbusd --devices 3 --dir DIR`` in the
foreground, DIR a fresh temporary directory), waits for its readiness byte
on ``--ready-fd`` (docs/reliability.md section 7; never for socket files),
points the clients at it with KBUS_DIR and stops it with SIGTERM at the end
of the test. The binary is $KBUSD, else <repo>/build/kbusd. If it is
missing the test fails (it is never skipped).
"""

import os
import pathlib
import select
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

TESTS_DIR = pathlib.Path(__file__).resolve().parent
PYTHON_DIR = TESTS_DIR.parent
REPO_DIR = PYTHON_DIR.parent
VECTORS = REPO_DIR / 'tests' / 'vectors' / 'protocol.json'

# The package under test is the one in this tree, whatever PYTHONPATH says.
if str(PYTHON_DIR) not in sys.path:
    sys.path.insert(0, str(PYTHON_DIR))

NUM_DEVICES = 3
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def kbusd_path():
    return os.environ.get('KBUSD') or str(REPO_DIR / 'build' / 'kbusd')


class Daemon(object):
    """A running kbusd: ``dir`` (its socket directory), ``proc`` and
    ``env`` (an environment for client subprocesses)."""

    def __init__(self, dir, proc):
        self.dir = dir
        self.proc = proc
        self.env = dict(os.environ)
        self.env['KBUS_DIR'] = dir
        self.env['PYTHONPATH'] = os.pathsep.join(
            [str(PYTHON_DIR)] + [p for p in
                                 os.environ.get('PYTHONPATH', '').split(os.pathsep)
                                 if p])

    def socket_path(self, n):
        return os.path.join(self.dir, 'kbus%d' % n)


def start_ready(path, args, timeout=START_TIMEOUT, **popen_args):
    """Starts ``path args... --ready-fd N`` and waits (bounded) for its
    readiness byte. Returns (proc, None) once it serves, or (None, reason)
    if it exited or stayed silent (then it is killed)."""
    r, w = os.pipe()
    try:
        proc = subprocess.Popen([path] + list(args) + ['--ready-fd', str(w)],
                                stdin=subprocess.DEVNULL, pass_fds=(w,),
                                **popen_args)
    finally:
        os.close(w)
    try:
        readable, _, _ = select.select([r], [], [], timeout)
        byte = os.read(r, 1) if readable else None
    finally:
        os.close(r)
    if byte:
        return proc, None
    if byte is None:
        proc.kill()
        proc.wait()
        return None, 'no readiness within %gs' % timeout
    return None, 'it exited with status %s' % proc.wait(timeout=STOP_TIMEOUT)


def _start_kbusd(extra_args=()):
    path = kbusd_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail('kbusd not found (or not executable) at %s: build it '
                    '(cmake --build build --target kbusd) or set KBUSD to '
                    'its path' % path, pytrace=False)
    # Short path: Unix socket paths are limited to 107 bytes.
    d = tempfile.mkdtemp(prefix='kbuspy-')
    proc, rc = start_ready(path, ['--devices', str(NUM_DEVICES), '--dir', d] +
                           list(extra_args))
    if proc is None:
        shutil.rmtree(d, ignore_errors=True)
        pytest.fail('kbusd (%s) did not start in %s: %s' % (path, d, rc),
                    pytrace=False)
    return Daemon(d, proc)


def _stop_kbusd(daemon):
    proc = daemon.proc
    rc = proc.poll()
    if rc is None:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = 'killed: no exit within %gs of SIGTERM' % STOP_TIMEOUT
    shutil.rmtree(daemon.dir, ignore_errors=True)
    return rc


def pytest_configure(config):
    config.addinivalue_line('markers', 'kbusd_args(*args): extra kbusd '
                            'command line arguments for the kbusd fixture')


@pytest.fixture
def kbusd(request):
    """A private kbusd with buses 0, 1 and 2; KBUS_DIR points at it."""
    old = os.environ.get('KBUS_DIR')
    marker = request.node.get_closest_marker('kbusd_args')
    daemon = _start_kbusd(marker.args if marker else ())
    os.environ['KBUS_DIR'] = daemon.dir
    try:
        yield daemon
    finally:
        if old is None:
            os.environ.pop('KBUS_DIR', None)
        else:
            os.environ['KBUS_DIR'] = old
        rc = _stop_kbusd(daemon)
    assert rc == 0, 'kbusd did not exit cleanly on SIGTERM: %s' % (rc,)
