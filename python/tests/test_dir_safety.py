"""The bus directory must be safe before the Python client talks to a
daemon there (docs/reliability.md section 9, docs/decisions.md D27): owned
by the effective uid or root (or handed over by root, in a parent only root
may write), and writable by nobody else. kbus.ksock.bus_dir_problem() is
the rule of src/util/dirs.hpp; its messages are kbusd's, word for word."""

import errno
import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from kbus import Ksock
from kbus.ksock import bus_dir_problem

from conftest import kbusd_path, start_ready

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason='needs root to chown (CI runs as root)')


@pytest.fixture
def base():
    # Short path: Unix socket paths are limited to 107 bytes.
    d = tempfile.mkdtemp(prefix='kbuspyd-')
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def kbusd_refusal(directory):
    """What kbusd says when it refuses to start in ``directory``."""
    proc = subprocess.run([kbusd_path(), '--dir', directory],
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 1, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith('kbusd: '), proc.stderr
    return line[len('kbusd: '):]


def test_own_directory_is_safe(base):
    mine = os.path.join(base, 'mine')
    os.mkdir(mine, 0o700)
    assert bus_dir_problem(mine) is None
    assert bus_dir_problem(mine + '/') is None
    assert bus_dir_problem(os.path.join(base, 'missing')) is None


def test_writable_directory_is_refused_as_kbusd_says(base):
    d = os.path.join(base, 'open')
    os.mkdir(d)
    os.chmod(d, 0o777)
    problem = bus_dir_problem(d)
    assert problem == ('unsafe bus directory %s: it is writable by others '
                       '(mode 0777), so they could replace the bus sockets: '
                       'chmod go-w %s, or set KBUS_DIR (kbusd: --dir) to a '
                       'directory of your own' % (d, d))
    assert kbusd_refusal(d) == problem
    os.chmod(d, 0o770)
    assert 'writable by its group (mode 0770)' in bus_dir_problem(d)
    assert kbusd_refusal(d) == bus_dir_problem(d)


def test_symbolic_link_is_refused_as_kbusd_says(base):
    mine = os.path.join(base, 'mine')
    os.mkdir(mine, 0o700)
    link = os.path.join(base, 'link')
    os.symlink(mine, link)
    for path in (link, link + '/'):
        problem = bus_dir_problem(path)
        assert problem.startswith('unsafe bus directory %s: it is a symbolic '
                                  'link (owner ' % link), problem
        assert kbusd_refusal(path) == problem


@needs_root
def test_another_users_directory_is_refused_as_kbusd_says(base):
    # Like /tmp: everyone may create in it, so whoever made kbus-1000 first
    # owns it.
    tmp = os.path.join(base, 'tmp')
    os.mkdir(tmp)
    os.chmod(tmp, 0o1777)
    d = os.path.join(tmp, 'kbus-0')
    os.mkdir(d, 0o755)
    os.chown(d, 4242, 4242)
    problem = bus_dir_problem(d)
    assert problem == ('unsafe bus directory %s: it is owned by uid 4242, '
                       'expected root (or a directory that root made for its '
                       'owner, in a parent only root may write): remove it, '
                       'or set KBUS_DIR (kbusd: --dir) to a directory of your '
                       'own' % d)
    assert kbusd_refusal(d) == problem


@needs_root
def test_directory_given_by_root_is_safe(base):
    # /run/kbus given to kbusd.service's user: base is root's, 0755.
    d = os.path.join(base, 'kbus')
    os.mkdir(d, 0o755)
    os.chown(d, 4242, 4242)
    assert bus_dir_problem(d) is None
    os.chmod(d, 0o775)      # but never writable by its group
    assert 'writable by its group' in bus_dir_problem(d)


def test_client_never_talks_to_a_daemon_in_an_unsafe_directory(
        base, monkeypatch):
    d = os.path.join(base, 'bus')
    os.mkdir(d, 0o700)
    proc, why = start_ready(kbusd_path(), ['--dir', d])
    assert proc is not None, why
    try:
        monkeypatch.setenv('KBUS_DIR', d)
        os.chmod(d, 0o777)
        with pytest.raises(PermissionError) as e:
            Ksock(0)
        assert e.value.errno == errno.EPERM
        assert e.value.filename == d
        assert 'unsafe bus directory %s: it is writable by others' % d in \
            str(e.value)
        # Through a symbolic link, even to a good directory.
        os.chmod(d, 0o700)
        link = os.path.join(base, 'link')
        os.symlink(d, link)
        monkeypatch.setenv('KBUS_DIR', link)
        with pytest.raises(PermissionError) as e:
            Ksock(0)
        assert 'it is a symbolic link' in str(e.value)
        # Fixed: it opens, and is the first Ksock the daemon ever saw - the
        # refused opens never said HELLO.
        monkeypatch.setenv('KBUS_DIR', d)
        k = Ksock(0)
        try:
            assert k.ksock_id() == 1
        finally:
            k.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_kbusd_creates_its_directory_without_write_for_others(base):
    d = os.path.join(base, 'made', 'kbus')
    proc, why = start_ready(kbusd_path(), ['--dir', d, '--mode', '0660'])
    assert proc is not None, why
    try:
        st = os.lstat(d)
        assert stat.S_IMODE(st.st_mode) == 0o710
        assert stat.S_IMODE(os.lstat(os.path.join(d, 'kbus0')).st_mode) == \
            0o660
        assert bus_dir_problem(d) is None
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
