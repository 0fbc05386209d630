"""PEP 517 build backend for the kbus package: setuptools' own, made to work
offline.

pip builds in an isolated environment and would first download the
backend's requirements (setuptools, wheel) from a package index. This
wrapper needs none: it uses the setuptools and wheel already installed for
the interpreter (Debian: python3-setuptools, python3-wheel), looking for
them in the interpreter's site-packages directories if build isolation has
hidden them. An interpreter that has setuptools without any way to build a
wheel (no ``wheel`` package, setuptools older than 70.1), or no setuptools
at all, gets the plain wheel of kbus (pure Python, ``py3-none-any``) built
here with the standard library.
"""

import base64
import hashlib
import io
import os
import re
import site
import sys
import tarfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _importable():
    try:
        import setuptools  # noqa: F401
    except ImportError:
        return False
    try:
        import wheel  # noqa: F401
        return True
    except ImportError:
        pass
    try:
        from setuptools.command import bdist_wheel  # noqa: F401
        return True
    except ImportError:
        return False


_USE_SETUPTOOLS = _importable()
if not _USE_SETUPTOOLS:
    # The interpreter's own site-packages (hidden by build isolation), then
    # those of the base installation (for a virtual environment).
    for _path in (site.getsitepackages() +
                  site.getsitepackages([sys.base_prefix])):
        if _path not in sys.path:
            sys.path.append(_path)
    _USE_SETUPTOOLS = _importable()

if _USE_SETUPTOOLS:
    from setuptools import build_meta as _orig


def _project():
    """name, version, summary, requires-python from pyproject.toml."""
    with open(os.path.join(ROOT, 'pyproject.toml'), encoding='utf-8') as f:
        text = f.read()
    section = text.split('[project]', 1)[1].split('\n[', 1)[0]

    def value(key):
        m = re.search(r'^%s\s*=\s*"([^"]*)"' % re.escape(key), section, re.M)
        return m.group(1) if m else ''
    return (value('name'), value('version'), value('description'),
            value('requires-python'))


def _metadata():
    name, version, summary, requires = _project()
    lines = ['Metadata-Version: 2.1', 'Name: %s' % name,
             'Version: %s' % version, 'Summary: %s' % summary]
    if requires:
        lines.append('Requires-Python: %s' % requires)
    readme = os.path.join(ROOT, 'README.md')
    body = ''
    if os.path.exists(readme):
        lines.append('Description-Content-Type: text/markdown')
        with open(readme, encoding='utf-8') as f:
            body = '\n' + f.read()
    return name, version, '\n'.join(lines) + '\n' + body


def _package_files():
    pkg = os.path.join(ROOT, 'kbus')
    return sorted(os.path.join('kbus', f) for f in os.listdir(pkg)
                  if f.endswith('.py'))


def _record_hash(data):
    digest = hashlib.sha256(data).digest()
    return 'sha256=' + base64.urlsafe_b64encode(digest).rstrip(b'=').decode()


def _dist_info(name, version, metadata):
    return {
        'METADATA': metadata.encode('utf-8'),
        'WHEEL': ('Wheel-Version: 1.0\nGenerator: kbus_build_backend\n'
                  'Root-Is-Purelib: true\nTag: py3-none-any\n').encode(),
        'top_level.txt': b'kbus\n',
    }


def _plain_build_wheel(wheel_directory, config_settings=None,
                       metadata_directory=None):
    name, version, metadata = _metadata()
    dist_info = '%s-%s.dist-info' % (name, version)
    filename = '%s-%s-py3-none-any.whl' % (name, version)
    records = []
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), 'w',
                         zipfile.ZIP_DEFLATED) as zf:
        for rel in _package_files():
            with open(os.path.join(ROOT, rel), 'rb') as f:
                data = f.read()
            arc = rel.replace(os.sep, '/')
            zf.writestr(arc, data)
            records.append('%s,%s,%d' % (arc, _record_hash(data), len(data)))
        for fname, data in _dist_info(name, version, metadata).items():
            arc = '%s/%s' % (dist_info, fname)
            zf.writestr(arc, data)
            records.append('%s,%s,%d' % (arc, _record_hash(data), len(data)))
        records.append('%s/RECORD,,' % dist_info)
        zf.writestr('%s/RECORD' % dist_info, '\n'.join(records) + '\n')
    return filename


def _plain_prepare_metadata(metadata_directory, config_settings=None):
    name, version, metadata = _metadata()
    dist_info = '%s-%s.dist-info' % (name, version)
    path = os.path.join(metadata_directory, dist_info)
    os.makedirs(path, exist_ok=True)
    for fname, data in _dist_info(name, version, metadata).items():
        with open(os.path.join(path, fname), 'wb') as f:
            f.write(data)
    return dist_info


def _plain_build_sdist(sdist_directory, config_settings=None):
    name, version, metadata = _metadata()
    base = '%s-%s' % (name, version)
    filename = base + '.tar.gz'
    files = ['pyproject.toml', 'README.md',
             os.path.join('_build', 'kbus_build_backend.py')] + _package_files()
    with tarfile.open(os.path.join(sdist_directory, filename), 'w:gz',
                      format=tarfile.PAX_FORMAT) as tf:
        for rel in files:
            full = os.path.join(ROOT, rel)
            if os.path.exists(full):
                tf.add(full, arcname='%s/%s' % (base, rel.replace(os.sep, '/')))
        info = tarfile.TarInfo('%s/PKG-INFO' % base)
        data = metadata.encode('utf-8')
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return filename


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


if _USE_SETUPTOOLS:
    prepare_metadata_for_build_wheel = _orig.prepare_metadata_for_build_wheel
    build_wheel = _orig.build_wheel
    build_sdist = _orig.build_sdist
    if hasattr(_orig, 'build_editable'):
        build_editable = _orig.build_editable
        prepare_metadata_for_build_editable = getattr(
            _orig, 'prepare_metadata_for_build_editable', None)
        if prepare_metadata_for_build_editable is None:
            del prepare_metadata_for_build_editable
else:
    prepare_metadata_for_build_wheel = _plain_prepare_metadata
    build_wheel = _plain_build_wheel
    build_sdist = _plain_build_sdist
