"""The package installs offline (`pip install ./python`) and keeps the
original's module layout."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import PYTHON_DIR


def _copy_project(dest):
    for name in ('pyproject.toml', 'README.md'):
        shutil.copy(os.path.join(PYTHON_DIR, name), dest)
    for name in ('kbus', '_build'):
        shutil.copytree(os.path.join(PYTHON_DIR, name), os.path.join(dest, name),
                        ignore=shutil.ignore_patterns('__pycache__'))


def test_pip_install_offline(tmp_path):
    try:
        import pip  # noqa: F401
    except ImportError:
        pytest.skip('pip is not installed for %s (Debian: python3-pip)'
                    % sys.executable)
    src = tmp_path / 'src'
    src.mkdir()
    _copy_project(str(src))
    target = tmp_path / 'target'
    env = dict(os.environ, PIP_NO_INDEX='1', PIP_DISABLE_PIP_VERSION_CHECK='1')
    env.pop('PIP_FIND_LINKS', None)
    r = subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps',
                        '--no-index', '--target', str(target), str(src)],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=300)
    assert r.returncode == 0, r.stdout.decode(errors='replace')
    for f in ('__init__.py', 'ksock.py', 'messages.py'):
        assert (target / 'kbus' / f).exists()
    check = subprocess.run(
        [sys.executable, '-c',
         'import kbus, kbus.ksock, kbus.messages; '
         'print(kbus.__file__, kbus.Ksock.__module__, kbus.MSG_HEADER_LEN)'],
        env=dict(os.environ, PYTHONPATH=str(target)), cwd=str(tmp_path),
        stdout=subprocess.PIPE, timeout=60)
    out = check.stdout.decode().split()
    assert out[0] == str(target / 'kbus' / '__init__.py')
    assert out[1] == 'kbus.ksock'


def test_plain_wheel_builder(tmp_path):
    """The stdlib-only wheel, for interpreters without setuptools+wheel
    (run in a subprocess: the backend module imports setuptools)."""
    code = ('import sys; sys.path.insert(0, sys.argv[1]); '
            'import kbus_build_backend as b; '
            'print(b._plain_build_wheel(sys.argv[2]), '
            'b._plain_build_sdist(sys.argv[2]), '
            'b.get_requires_for_build_wheel())')
    r = subprocess.run([sys.executable, '-c', code,
                        os.path.join(str(PYTHON_DIR), '_build'), str(tmp_path)],
                       stdout=subprocess.PIPE, timeout=60)
    assert r.returncode == 0
    assert r.stdout.decode().split() == ['kbus-0.1.0-py3-none-any.whl',
                                         'kbus-0.1.0.tar.gz', '[]']
    name = 'kbus-0.1.0-py3-none-any.whl'
    with zipfile.ZipFile(str(tmp_path / name)) as zf:
        names = set(zf.namelist())
        assert {'kbus/__init__.py', 'kbus/ksock.py', 'kbus/messages.py',
                'kbus-0.1.0.dist-info/METADATA', 'kbus-0.1.0.dist-info/WHEEL',
                'kbus-0.1.0.dist-info/RECORD'} <= names
        record = zf.read('kbus-0.1.0.dist-info/RECORD').decode()
        assert 'kbus/ksock.py,sha256=' in record
        meta = zf.read('kbus-0.1.0.dist-info/METADATA').decode()
        assert 'Name: kbus\n' in meta and 'Version: 0.1.0\n' in meta
