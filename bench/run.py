#!/usr/bin/env python3
"""Runs every comparison benchmark of bench/ in one go and prints one table.

    python3 bench/run.py [--build DIR] [--quick] [--only WORD[,WORD...]]
                         [--modes default,pinned] [--out DIR]

For each scheduling mode -- "default" (the kernel places processes) and
"pinned" (every process, daemons included, on CPU 0 through taskset -c 0) --
it starts each peer's daemon privately (kbusd, dbus-daemon, dbus-broker,
mosquitto: in a temporary directory, on Unix sockets), runs the benchmark
binaries built from bench/ (kbus_bench_*), bench/kbus_py.py and
bench/peers_py.py (kbus's peers driven from Python), and stops every daemon
by its PID. Each binary prints RESULT lines (JSON); this script adds the
ratios to the floor measured in the same run, checks the targets of issues
7 and 16, prints the table, and writes it to OUT/latest.txt (and everything
to OUT/latest.json, which bench/plot.py draws). OUT is bench/results.

Ratio to the floor ("x floor"): for a round trip, p50 / the p50 of the
AF_UNIX SOCK_SEQPACKET relay (client -> relay -> server and back) with the
same payload; for a fan-out, messages/s per listener / that of the AF_UNIX
relay fan-out with the same number of listeners. Lower is better for the
first, higher for the second.

The floors of kbus's call semantics: "AF_UNIX acked relay" rows (see
bench/peers_raw.cpp) measure a relay that does nothing but answer every SEND
with an id and every WAIT with the next message, as kbusd must for the
generic calls. The targets on generic-call round trips and on one-per-call
throughput also print that relay's own ratio (what any broker with these
calls pays at least) and kbus's ratio to it.

Issue 16's targets: a request/reply through the Python generic calls
(send_msg, then wait_for_msg) is faster than ZeroMQ REQ/REP through pyzmq and
than a D-Bus method call through python3-dbus (dbus-broker; dbus-daemon's
ratio is printed beside it), each driven from Python on both ends.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

FLOOR = 'AF_UNIX seqpacket relay (floor)'
DIRECT = 'AF_UNIX seqpacket direct'
# The floors of kbus's call semantics (bench/peers_raw.cpp): a relay that
# answers every SEND with an id and every WAIT with the next message.
ACKED = 'AF_UNIX acked relay (call floor)'
ACKED_EPOLL = 'AF_UNIX acked relay, epoll'
# The peers of kbus's Python client, driven from Python (bench/peers_py.py).
PY_ZMQ = 'ZeroMQ REQ/REP, Python (pyzmq)'
PY_DBUS = '%s, Python (python3-dbus)'  # % 'dbus-daemon' or 'dbus-broker'
# The Debian package of each Python module bench/peers_py.py needs.
PY_PEER_MODULES = {'zmq': 'python3-zmq', 'dbus': 'python3-dbus',
                   'dbus.mainloop.glib': 'python3-dbus', 'gi': 'python3-gi'}

DBUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=%(sock)s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
    <allow own="*"/>
  </policy>
  <!-- the limits of Debian's session.conf -->
  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_incoming_unix_fds">250000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>
  <limit name="max_outgoing_unix_fds">250000000</limit>
  <limit name="max_message_size">1000000000</limit>
  <limit name="max_completed_connections">100000</limit>
  <limit name="max_incomplete_connections">10000</limit>
  <limit name="max_connections_per_user">100000</limit>
  <limit name="max_match_rules_per_connection">50000</limit>
  <limit name="max_replies_per_connection">50000</limit>
</busconfig>
"""

MOSQUITTO_CONF = """listener 0 %(sock)s
allow_anonymous true
persistence false
# no limit on the queue of a slow subscriber (0 = none): count, not drop
max_queued_messages 0
max_inflight_messages 0
user %(user)s
log_dest none
"""


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ daemons

class Daemon:
    """A private daemon: started in its own directory, stopped by PID."""

    def __init__(self, name, argv, ready, prefix):
        self.name = name
        self.proc = None
        self.error = None
        try:
            self.proc = subprocess.Popen(prefix + argv, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
        except OSError as e:
            self.error = str(e)
            return
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors='replace').strip()
                self.error = 'exited: ' + (err.splitlines()[-1] if err else
                                           'status %d' % self.proc.returncode)
                self.proc = None
                return
            if ready():
                return
            if time.monotonic() > deadline:
                self.error = 'did not become ready'
                self.stop()
                return
            time.sleep(0.02)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def stop(self):
        if not self.proc:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def dbus_ready(address):
    def ready():
        tool = shutil.which('dbus-send')
        if not tool:
            return os.path.exists(address.split('=', 1)[1])
        return subprocess.run(
            [tool, '--bus=' + address, '--print-reply', '--type=method_call',
             '--dest=org.freedesktop.DBus', '/org/freedesktop/DBus',
             'org.freedesktop.DBus.GetId'], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, timeout=10).returncode == 0
    return ready


def socket_ready(path):
    def ready():
        if not os.path.exists(path):
            return False
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return True
        except OSError:
            return False
        finally:
            s.close()
    return ready


def start_daemons(work, build, prefix):
    """Starts kbusd, dbus-daemon, dbus-broker and mosquitto in `work`."""
    d = {}
    kdir = os.path.join(work, 'kbus')
    os.makedirs(kdir, exist_ok=True)
    d['kbusd'] = Daemon('kbusd', [
        os.path.join(build, 'kbusd'), '--dir', kdir, '--max-msg-size', '409600',
        '--max-ksocks-per-bus', '0', '--max-ksocks-per-user', '0'],
        socket_ready(os.path.join(kdir, 'kbus0')), prefix)
    d['kbusd'].dir = kdir

    for name in ('dbus-daemon', 'dbus-broker'):
        sock = os.path.join(work, name + '.sock')
        conf = os.path.join(work, name + '.conf')
        with open(conf, 'w') as f:
            f.write(DBUS_CONF % {'sock': sock})
        address = 'unix:path=' + sock
        if name == 'dbus-daemon':
            if not shutil.which('dbus-daemon'):
                d[name] = missing(name, 'dbus-daemon is not installed')
                continue
            argv = ['dbus-daemon', '--config-file=' + conf, '--nofork']
        else:
            if not shutil.which('dbus-broker-launch'):
                d[name] = missing(name, 'dbus-broker is not installed')
                continue
            argv = [sys.executable, os.path.join(HERE, 'dbus_broker.py'),
                    '--socket', sock, '--config', conf]
        d[name] = Daemon(name, argv, dbus_ready(address), prefix)
        d[name].address = address

    sock = os.path.join(work, 'mosquitto.sock')
    if shutil.which('mosquitto') or os.path.exists('/usr/sbin/mosquitto'):
        conf = os.path.join(work, 'mosquitto.conf')
        import pwd
        with open(conf, 'w') as f:
            f.write(MOSQUITTO_CONF % {'sock': sock,
                                      'user': pwd.getpwuid(os.getuid()).pw_name})
        exe = shutil.which('mosquitto') or '/usr/sbin/mosquitto'
        d['mosquitto'] = Daemon('mosquitto', [exe, '-c', conf], socket_ready(sock), prefix)
    else:
        d['mosquitto'] = missing('mosquitto', 'mosquitto is not installed')
    d['mosquitto'].sock = sock
    for name, dm in d.items():
        if dm.error:
            log('  %s: not available (%s)' % (name, dm.error))
    return d


def missing(name, why):
    dm = Daemon.__new__(Daemon)
    dm.name, dm.proc, dm.error = name, None, why
    return dm


# ------------------------------------------------------------------ running

def cpu_busy(seconds=0.3):
    """Fraction of all CPUs busy during `seconds` (no benchmark of ours runs
    then: this is other work on the machine)."""
    def sample():
        with open('/proc/stat') as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v), idle
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


class Runner:
    # Before each benchmark, wait (up to 20 s, and 6 minutes in all) until
    # other work uses less than a third of the CPUs; a row measured while it
    # still did says so.
    QUIET = 0.33
    WAIT_EACH = 20
    WAIT_TOTAL = 360

    def __init__(self, args):
        self.args = args
        self.rows = []
        self.waited = 0.0

    def wait_quiet(self):
        start = time.monotonic()
        busy = cpu_busy()
        while (busy > self.QUIET and time.monotonic() - start < self.WAIT_EACH and
               self.waited + time.monotonic() - start < self.WAIT_TOTAL):
            time.sleep(0.5)
            busy = cpu_busy()
        self.waited += time.monotonic() - start
        return busy

    def run(self, mode, prefix, argv, placeholder, timeout=300):
        """Runs one benchmark command; adds its RESULT rows (or a row saying
        why there are none, shaped by `placeholder`)."""
        if self.args.only and not any(w in ' '.join(argv) + ' ' + placeholder['system']
                                      for w in self.args.only):
            return
        if any(w in ' '.join(argv) + ' ' + placeholder['system'] for w in self.args.skip):
            return
        label = '%s %s' % (placeholder['system'], placeholder['test'])
        if placeholder.get('payload'):
            label += ' %d B' % placeholder['payload']
        if placeholder.get('listeners'):
            label += ' x%d' % placeholder['listeners']
        log('  [%s] %s' % (mode, label))
        exe = argv[0]
        if not (os.path.exists(exe) or shutil.which(exe)):
            self.add(mode, dict(placeholder, note='not available: %s not built'
                                % os.path.basename(exe)))
            return
        busy = self.wait_quiet() if self.args.wait_quiet else 0.0
        try:
            out = subprocess.run(prefix + argv, capture_output=True, text=True,
                                 timeout=timeout)
        except subprocess.TimeoutExpired as e:
            out = None
            err = 'timed out after %d s' % timeout
            stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or '')
        else:
            stdout = out.stdout
            err = None if out.returncode == 0 else 'exit status %d: %s' % (
                out.returncode, (out.stderr.strip().splitlines() or [''])[-1][:120])
        got = False
        for line in stdout.splitlines():
            if line.startswith('RESULT '):
                row = json.loads(line[7:])
                if placeholder.get('force_system'):  # the same program, another setting
                    row['system'] = placeholder['system']
                row['busy'] = round(busy, 2)
                self.add(mode, row)
                got = True
        if not got:
            self.add(mode, dict(placeholder, note='failed: ' + (err or 'no result')))
        elif err:
            log('    (%s)' % err)

    def add(self, mode, row):
        base = dict(system='', test='', payload=0, listeners=0, p50_us=-1, p99_us=-1,
                    mean_us=-1, n=0, rate=-1, sent=-1, lost=-1, value=-1, unit='', note='')
        base.update(row)
        base['sched'] = mode
        self.rows.append(base)

    def unavailable(self, mode, placeholder, why):
        if self.args.only and not any(w in placeholder['system'] for w in self.args.only):
            return
        self.add(mode, dict(placeholder, note='not available: ' + why))


def sizes(quick):
    """Per round; a full run has 5 interleaved rounds (the best is shown),
    a quick one 1 round of much less work."""
    s = dict(rounds=5, rtt=20000, rtt_slow=10000, raw_tput=100000, zmq_tput=300000,
             mqtt_tput=50000, dbus_tput=30000, kbus_one=30000, kbus_batch=500000,
             py_one=10000, py_batch=100000, bind_sends=50000, fan_lat=200, fan_msgs=2000,
             mem_ksocks=10000, mem_msgs=50000, bindings=(10, 10000, 100000))
    if quick:
        s.update(rounds=1, rtt=2000, rtt_slow=1000, raw_tput=20000, zmq_tput=50000,
                 mqtt_tput=10000, dbus_tput=5000, kbus_one=5000, kbus_batch=100000,
                 py_one=2000, py_batch=20000, bind_sends=2000, fan_lat=20, fan_msgs=200,
                 mem_ksocks=2000, mem_msgs=10000)
    return s


class Jobs:
    """The benchmarks of one scheduling mode, collected first so that they
    can be run in interleaved rounds."""

    def __init__(self):
        self.jobs = []

    def run(self, mode, prefix, argv, placeholder, rounds=True):
        self.jobs.append((mode, prefix, argv, placeholder, rounds))

    def unavailable(self, mode, placeholder, why):
        self.jobs.append((mode, None, None, (placeholder, why), False))


def failed(x):
    return x['note'].startswith(('not available', 'failed'))


def merge_rounds(rows):
    """One row per measurement: its best round (lowest p50, or highest
    rate), with the sums of the counts of all rounds (so a loss in any round
    shows); the p50 (or rate) of every round is kept in 'rounds'."""
    groups = {}
    order = []
    for x in rows:
        k = (x['sched'], x['system'], x['test'], x['payload'], x['listeners'])
        if k not in groups:
            groups[k] = []
            order.append(k)
        groups[k].append(x)
    out = []
    for k in order:
        g = groups[k]
        good = [x for x in g if not failed(x)]
        if not good:
            out.append(g[0])
            continue
        # The best round: other work on the machine only ever makes a
        # round slower, and every system gets the same number of rounds,
        # interleaved.
        if good[0]['rate'] > 0 and good[0]['test'] != 'round trip' and good[0]['listeners']:
            best = max(good, key=lambda x: x['rate'])
        elif good[0]['p50_us'] > 0:
            best = min(good, key=lambda x: x['p50_us'])
        else:
            best = good[0]
        m = dict(best)
        m['busy'] = best.get('busy', 0)
        m['n'] = sum(x['n'] for x in good)
        for f in ('sent', 'lost'):
            if all(x[f] >= 0 for x in good):
                m[f] = sum(x[f] for x in good)
        m['rounds'] = [x['rate'] if x['test'] != 'round trip' and x['rate'] > 0
                       else x['p50_us'] for x in good]
        notes = []
        for x in good:
            if x['note'] and x['note'] not in notes:
                notes.append(x['note'])
        r = [v for v in m['rounds'] if v > 0]
        if len(r) > 1 and max(r) > 1.3 * min(r):
            notes.append('rounds: %s' % ' / '.join(fmt_num(v) for v in m['rounds']))
        if len(good) < len(g):
            notes.append('%d of %d rounds failed: %s' % (len(g) - len(good), len(g),
                                                           [x for x in g if failed(x)][0]['note']))
        m['note'] = '; '.join(notes)
        out.append(m)
    return out


def missing_python(*modules):
    """Why bench/peers_py.py cannot run with these modules ('' if it can)."""
    import importlib.util
    gone, packages = [], []
    for m in modules:
        try:
            found = importlib.util.find_spec(m) is not None
        except ImportError:  # its parent package is missing: already said
            continue
        if not found:
            gone.append(m)
            if PY_PEER_MODULES[m] not in packages:
                packages.append(PY_PEER_MODULES[m])
    if not gone:
        return ''
    return '%s cannot import %s: install Debian\'s %s' % (
        sys.executable, ', '.join(gone), ', '.join(packages))


def run_mode(r, mode, build, work, sz):
    prefix = ['taskset', '-c', '0'] if mode == 'pinned' else []
    J = Jobs()
    B = os.path.join(build, 'bench')
    py = [sys.executable, os.path.join(HERE, 'kbus_py.py')]
    pp = [sys.executable, os.path.join(HERE, 'peers_py.py')]
    log('%s scheduling: starting daemons' % mode)
    d = start_daemons(work, build, prefix)
    kdir = d['kbusd'].dir
    try:
        # ---- round trips
        for payload in (64, 4096):
            P = ['--payload', str(payload)]
            it = ['--iterations', str(sz['rtt'])]
            slow = ['--iterations', str(sz['rtt_slow'])]
            rt = dict(test='round trip', payload=payload)
            for t, name in (('seqpacket', DIRECT), ('seqpacket-relay', FLOOR),
                            ('epoll-seqpacket-relay', 'AF_UNIX seqpacket relay, epoll'),
                            ('stream-relay', 'AF_UNIX stream relay'),
                            ('epoll-stream-relay', 'AF_UNIX stream relay, epoll'),
                            ('acked-relay', ACKED), ('acked-relay-epoll', ACKED_EPOLL),
                            ('mq', 'POSIX mqueue')):
                J.run(mode, prefix, [B + '/kbus_bench_raw', 'rtt', '--transport', t] + P + it,
                      dict(rt, system=name))
            if d['kbusd'].error:
                for s in ('kbus C++ request()', 'kbus C++ send+wait+read',
                          'kbus C send+wait+read', 'kbus Python send+wait+read',
                          'kbus Python request()'):
                    J.unavailable(mode, dict(rt, system=s), 'kbusd: ' + d['kbusd'].error)
            else:
                K = ['--dir', kdir]
                J.run(mode, prefix, [B + '/kbus_bench_kbus', 'rtt', '--calls', 'request'] + K + P + it,
                      dict(rt, system='kbus C++ request()'))
                J.run(mode, prefix, [B + '/kbus_bench_kbus', 'rtt', '--calls', 'generic'] + K + P + it,
                      dict(rt, system='kbus C++ send+wait+read'))
                J.run(mode, prefix, [B + '/kbus_bench_c', 'rtt'] + K + P + it,
                      dict(rt, system='kbus C send+wait+read'))
                # The same calls without the shared-memory receive queue
                # (docs/protocol.md §7): before and after, in one run.
                J.run(mode, prefix, ['env', 'KBUS_TRANSPORT=socket', B + '/kbus_bench_c', 'rtt']
                      + K + P + it, dict(rt, system='kbus C send+wait+read, socket only',
                                         force_system=True))
                J.run(mode, prefix, ['env', 'KBUS_TRANSPORT=socket', B + '/kbus_bench_kbus', 'rtt',
                                     '--calls', 'generic'] + K + P + it,
                      dict(rt, system='kbus C++ send+wait+read, socket only', force_system=True))
                J.run(mode, prefix, py + ['rtt', '--calls', 'generic'] + K + P + slow,
                      dict(rt, system='kbus Python send+wait+read'))
                J.run(mode, prefix, py + ['rtt', '--calls', 'request'] + K + P + slow,
                      dict(rt, system='kbus Python request()'))
            # Their peers driven from Python on both ends (issue 16).
            why = missing_python('zmq')
            if why:
                J.unavailable(mode, dict(rt, system=PY_ZMQ), why)
            else:
                J.run(mode, prefix, pp + ['zmq-rtt', '--dir', work] + P + slow,
                      dict(rt, system=PY_ZMQ))
            for name in ('dbus-daemon', 'dbus-broker'):
                why = d[name].error or missing_python('dbus', 'dbus.mainloop.glib', 'gi')
                if why:
                    J.unavailable(mode, dict(rt, system=PY_DBUS % name), why)
                else:
                    J.run(mode, prefix, pp + ['dbus-rtt', '--address', d[name].address,
                                              '--system', PY_DBUS % name] + P + slow,
                          dict(rt, system=PY_DBUS % name))
            J.run(mode, prefix, [B + '/kbus_bench_zmq', 'rtt', '--dir', work] + P + it,
                  dict(rt, system='ZeroMQ ipc REQ/REP'))
            for name in ('dbus-daemon', 'dbus-broker'):
                if d[name].error:
                    J.unavailable(mode, dict(rt, system=name), d[name].error)
                else:
                    J.run(mode, prefix, [B + '/kbus_bench_dbus', 'rtt', '--address',
                                         d[name].address, '--system', name] + P + slow,
                          dict(rt, system=name))
            if d['mosquitto'].error:
                J.unavailable(mode, dict(rt, system='mosquitto MQTT QoS0'), d['mosquitto'].error)
            else:
                J.run(mode, prefix, [B + '/kbus_bench_mqtt', 'rtt', '--socket',
                                     d['mosquitto'].sock] + P + slow,
                      dict(rt, system='mosquitto MQTT QoS0'))

        # ---- throughput, 64 B, 1 sender -> 1 and 4 listeners
        for L in (1, 4):
            tp = dict(test='fan-out', payload=64, listeners=L)
            Lx = ['--listeners', str(L)]
            J.run(mode, prefix, [B + '/kbus_bench_raw', 'tput', '--messages',
                                 str(sz['raw_tput'])] + Lx, dict(tp, system=FLOOR))
            # The floor of one SEND -> id round trip per message: listeners
            # pushed to, or asking with a WAIT per message (as kbus's
            # one-per-call listeners); the pull one also through an epoll
            # relay, shaped as kbusd is.
            for how, relay, name in (('push', 'blocking', ACKED), ('pull', 'blocking', ACKED),
                                     ('pull', 'epoll', ACKED_EPOLL)):
                J.run(mode, prefix, [B + '/kbus_bench_raw', 'tput', '--acked', how, '--relay',
                                     relay, '--messages', str(sz['raw_tput'])] + Lx,
                      dict(tp, system=name, test='fan-out, one per call, ' + how))
            if not d['kbusd'].error:
                K = ['--dir', kdir]
                J.run(mode, prefix, [B + '/kbus_bench_kbus', 'tput', '--batch', '1', '--messages',
                                     str(sz['kbus_one'])] + K + Lx,
                      dict(tp, system='kbus C++', test='fan-out, one per call'))
                J.run(mode, prefix, [B + '/kbus_bench_kbus', 'tput', '--batch', '1', '--recv-batch',
                                     '1024', '--messages', str(sz['kbus_one'])] + K + Lx,
                      dict(tp, system='kbus C++', test='fan-out, send one, read batch'))
                J.run(mode, prefix, [B + '/kbus_bench_kbus', 'tput', '--batch', '256', '--messages',
                                     str(sz['kbus_batch'])] + K + Lx,
                      dict(tp, system='kbus C++', test='fan-out, batch calls'))
                if L == 1:
                    J.run(mode, prefix, [B + '/kbus_bench_c', 'tput', '--batch', '1', '--messages',
                                         str(sz['kbus_one'])] + K + Lx,
                          dict(tp, system='kbus C', test='fan-out, one per call'))
                    J.run(mode, prefix, [B + '/kbus_bench_c', 'tput', '--batch', '256',
                                         '--messages', str(sz['kbus_batch'])] + K + Lx,
                          dict(tp, system='kbus C', test='fan-out, batch calls'))
                    J.run(mode, prefix, py + ['tput', '--batch', '1', '--messages',
                                              str(sz['py_one'])] + K + Lx,
                          dict(tp, system='kbus Python', test='fan-out, one per call'))
                    J.run(mode, prefix, py + ['tput', '--batch', '256', '--messages',
                                              str(sz['py_batch'])] + K + Lx,
                          dict(tp, system='kbus Python', test='fan-out, batch calls'))
            J.run(mode, prefix, [B + '/kbus_bench_zmq', 'tput', '--dir', work, '--messages',
                                 str(sz['zmq_tput'])] + Lx, dict(tp, system='ZeroMQ ipc PUB/SUB'))
            for name in ('dbus-daemon', 'dbus-broker'):
                if d[name].error:
                    J.unavailable(mode, dict(tp, system=name), d[name].error)
                else:
                    J.run(mode, prefix, [B + '/kbus_bench_dbus', 'tput', '--address',
                                         d[name].address, '--system', name, '--messages',
                                         str(sz['dbus_tput'])] + Lx, dict(tp, system=name))
            if d['mosquitto'].error:
                J.unavailable(mode, dict(tp, system='mosquitto MQTT QoS0'), d['mosquitto'].error)
            else:
                J.run(mode, prefix, [B + '/kbus_bench_mqtt', 'tput', '--socket',
                                     d['mosquitto'].sock, '--messages', str(sz['mqtt_tput'])] + Lx,
                      dict(tp, system='mosquitto MQTT QoS0'))

        # ---- kbus only: bindings, 1000 listeners
        if not d['kbusd'].error:
            K = ['--dir', kdir]
            J.run(mode, prefix, [B + '/kbus_bench_kbus', 'bindings', '--bindings',
                                 ','.join(str(n) for n in sz['bindings']),
                                 '--sends', str(sz['bind_sends'])] + K,
                  dict(system='kbus C++ send_msg()', test='send with N bindings', payload=4,
                       unit='bindings'), rounds=False)
            J.run(mode, prefix, [B + '/kbus_bench_kbus', 'fanout', '--listeners', '1000',
                                 '--latency-msgs', str(sz['fan_lat']), '--messages',
                                 str(sz['fan_msgs'])] + K,
                  dict(system='kbus C++', test='fan-out to 1000', payload=64, listeners=1000),
                  rounds=False)
        # ---- run: every job once per round, rounds interleaved, so that a
        # burst of other load on the machine hits all systems alike.
        first = len(r.rows)
        for rnd in range(sz['rounds']):
            if sz['rounds'] > 1:
                log('%s scheduling: round %d of %d' % (mode, rnd + 1, sz['rounds']))
            for (m, pre, argv, ph, multi) in J.jobs:
                if argv is None:
                    if rnd == 0:
                        r.unavailable(m, ph[0], ph[1])
                elif rnd == 0 or multi:
                    r.run(m, pre, argv, ph)
        r.rows[first:] = merge_rounds(r.rows[first:])
    finally:
        for dm in d.values():
            dm.stop()


def run_core_send(r, build, quick):
    """The bus core alone (no sockets): Google Benchmark, mean per send."""
    exe = os.path.join(build, 'bench', 'kbus_bench_core_send')
    ph = dict(system='kbus core, in-process', test='send with N bindings')
    if r.args.only and not any(w in 'core' for w in r.args.only):
        return
    if not os.path.exists(exe):
        r.add('default', dict(ph, note='not available: kbus_bench_core_send not built '
                                       '(libbenchmark-dev missing)'))
        return
    log('  [default] kbus core send with N bindings (Google Benchmark)')
    out = subprocess.run([exe, '--benchmark_format=json',
                          '--benchmark_min_time=%s' % ('0.05' if quick else '0.5')],
                         capture_output=True, text=True, timeout=600)
    try:
        data = json.loads(out.stdout)
    except ValueError:
        r.add('default', dict(ph, note='failed: ' + out.stderr.strip()[-120:]))
        return
    cycles = {'BM_RequestReply': 'request/reply cycle', 'BM_Announcement': 'announcement cycle'}
    for b in data.get('benchmarks', []):
        scale = {'ns': 1e-3, 'us': 1.0, 'ms': 1e3}[b.get('time_unit', 'ns')]
        t = b['real_time'] * scale
        allocs = b.get('allocs')
        extra = '' if allocs is None else '; %.1f heap allocations each' % allocs
        name = b['name']
        if name.startswith('BM_SendWithBindings/'):
            n = int(name.split('/')[-1])
            r.add('default', dict(system='kbus core, in-process', test='send with %d bindings' % n,
                                  payload=4, p50_us=t, mean_us=t, value=n, unit='bindings',
                                  note='mean per send (Google Benchmark); no socket' + extra))
        elif name in cycles:
            r.add('default', dict(system='kbus core, in-process', test=cycles[name], payload=64,
                                  p50_us=t, mean_us=t,
                                  note='mean per cycle as kbusd drives it (Google Benchmark); '
                                       'no socket' + extra))


def run_memory(r, build, work, sz):
    if r.args.only and not any(w in 'memory kbusd' for w in r.args.only):
        return
    kdir = os.path.join(work, 'kbus-memory')
    os.makedirs(kdir, exist_ok=True)
    log('default scheduling: kbusd memory (fresh daemon)')
    dm = Daemon('kbusd', [os.path.join(build, 'kbusd'), '--dir', kdir, '--max-ksocks-per-bus',
                          '0', '--max-ksocks-per-user', '0'],
                socket_ready(os.path.join(kdir, 'kbus0')), [])
    ph = dict(system='kbusd', test='memory per idle Ksock', unit='bytes')
    if dm.error:
        r.unavailable('default', ph, 'kbusd: ' + dm.error)
        return
    try:
        r.run('default', [], [os.path.join(build, 'bench', 'kbus_bench_kbus'), 'memory', '--dir',
                              kdir, '--daemon-pid', str(dm.pid), '--ksocks', str(sz['mem_ksocks']),
                              '--messages', str(sz['mem_msgs'])], ph)
    finally:
        dm.stop()


# ------------------------------------------------------------------ report

def find(rows, sched, system, test, payload=None, listeners=None):
    for x in rows:
        if (x['sched'] == sched and x['system'] == system and x['test'] == test and
                (payload is None or x['payload'] == payload) and
                (listeners is None or x['listeners'] == listeners) and
                not x['note'].startswith(('not available', 'failed'))):
            return x
    return None


def add_ratios(rows):
    for x in rows:
        x['ratio'] = None
        if x['note'].startswith(('not available', 'failed')):
            continue
        if x['test'] == 'round trip' and x['p50_us'] > 0:
            f = find(rows, x['sched'], FLOOR, 'round trip', x['payload'])
            if f and f['p50_us'] > 0:
                x['ratio'] = x['p50_us'] / f['p50_us']
        elif x['test'].startswith('fan-out') and x['listeners'] in (1, 4) and x['rate'] > 0:
            f = find(rows, x['sched'], FLOOR, 'fan-out', listeners=x['listeners'])
            if f and f['rate'] > 0:
                x['ratio'] = x['rate'] / f['rate']


def targets(rows, modes):
    """The targets of issue 7 (and issue 16's Python peers): (name, sched,
    measured text, verdict)."""
    out = []

    def add(name, sched, measured, ok):
        out.append(dict(target=name, sched=sched, measured=measured,
                        verdict='n/a' if ok is None else ('holds' if ok else 'MISSED')))

    for m in modes:
        for p in (64, 4096):
            floor = find(rows, m, FLOOR, 'round trip', p)
            req = find(rows, m, 'kbus C++ request()', 'round trip', p)
            if floor and req:
                v = req['p50_us'] / floor['p50_us']
                ep = find(rows, m, 'AF_UNIX stream relay, epoll', 'round trip', p)
                add('request() p50 <= 1.15 x relay floor, %d B' % p, m,
                    '%.2f us / %.2f us = %.2f%s' % (
                        req['p50_us'], floor['p50_us'], v,
                        ' (epoll stream relay alone: %.2f)' % (ep['p50_us'] / floor['p50_us'])
                        if ep else ''), v <= 1.15)
            else:
                add('request() p50 <= 1.15 x relay floor, %d B' % p, m, 'not measured', None)
            broker = find(rows, m, 'dbus-broker', 'round trip', p)
            if broker and req:
                v = req['p50_us'] / broker['p50_us']
                add('request() p50 <= 0.7 x dbus-broker method call, %d B' % p, m,
                    '%.2f us / %.2f us = %.2f' % (req['p50_us'], broker['p50_us'], v), v <= 0.7)
            else:
                add('request() p50 <= 0.7 x dbus-broker method call, %d B' % p, m,
                    'not measured (dbus-broker not available)' if req else 'not measured', None)
            acked = find(rows, m, ACKED, 'round trip', p)
            acked_ep = find(rows, m, ACKED_EPOLL, 'round trip', p)
            for lang in ('C++', 'C', 'Python'):
                g = find(rows, m, 'kbus %s send+wait+read' % lang, 'round trip', p)
                name = '%s send+wait+read p50 <= 1.5 x relay floor, %d B' % (lang, p)
                if g and floor:
                    v = g['p50_us'] / floor['p50_us']
                    add(name, m, '%.2f us / %.2f us = %.2f%s' % (
                        g['p50_us'], floor['p50_us'], v,
                        acked_floor_text(g, floor, acked, acked_ep, 1.5)), v <= 1.5)
                else:
                    add(name, m, 'not measured', None)
            python_peer_targets(rows, m, p, add)
        b = find(rows, m, 'kbus C++', 'fan-out, batch calls', listeners=1)
        z = find(rows, m, 'ZeroMQ ipc PUB/SUB', 'fan-out', listeners=1)
        if b:
            add('batch throughput to 1 listener >= 1 000 000 msg/s, none lost', m,
                '%.0f msg/s, lost %d' % (b['rate'], b['lost']),
                b['rate'] >= 1e6 and b['lost'] == 0)
        else:
            add('batch throughput to 1 listener >= 1 000 000 msg/s, none lost', m,
                'not measured', None)
        if b and z:
            v = b['rate'] / z['rate']
            add('batch throughput to 1 listener >= 0.5 x ZeroMQ PUB/SUB', m,
                '%.0f / %.0f = %.2f' % (b['rate'], z['rate'], v), v >= 0.5 and b['lost'] == 0)
        else:
            add('batch throughput to 1 listener >= 0.5 x ZeroMQ PUB/SUB', m, 'not measured', None)
        o = find(rows, m, 'kbus C++', 'fan-out, one per call', listeners=1)
        pp = find(rows, m, DIRECT, 'round trip', 64)
        if o and pp:
            v = o['rate'] / pp['rate']
            mixed = find(rows, m, 'kbus C++', 'fan-out, send one, read batch', listeners=1)
            add('one-per-call throughput >= 0.9 x direct AF_UNIX ping-pong rate', m,
                '%.0f / %.0f = %.2f%s%s' % (o['rate'], pp['rate'], v,
                                            ' (send one, read batch: %.2f)' % (mixed['rate'] / pp['rate'])
                                            if mixed else '', acked_tput_text(rows, m, o, pp, 0.9)),
                v >= 0.9 and o['lost'] == 0)
        else:
            add('one-per-call throughput >= 0.9 x direct AF_UNIX ping-pong rate', m,
                'not measured', None)
        s10 = find(rows, m, 'kbus C++ send_msg()', 'send with 10 bindings')
        s100k = find(rows, m, 'kbus C++ send_msg()', 'send with 100000 bindings')
        if s10 and s100k:
            v = s100k['p50_us'] / s10['p50_us']
            add('send p50 with 100 000 bindings <= 1.2 x with 10 (through kbusd)', m,
                '%.2f us / %.2f us = %.2f' % (s100k['p50_us'], s10['p50_us'], v), v <= 1.2)
        else:
            add('send p50 with 100 000 bindings <= 1.2 x with 10 (through kbusd)', m,
                'not measured', None)
        lost = [x for x in rows if x['sched'] == m and x['system'].startswith('kbus')
                and x['lost'] > 0]
        measured = [x for x in rows if x['sched'] == m and x['system'].startswith('kbus')
                    and x['lost'] >= 0]
        add('kbus loses no message (every fan-out row)', m,
            '%d of %d rows lost messages' % (len(lost), len(measured)) if measured else
            'not measured', (not lost) if measured else None)
    c10 = find(rows, 'default', 'kbus core, in-process', 'send with 10 bindings')
    c100k = find(rows, 'default', 'kbus core, in-process', 'send with 100000 bindings')
    if c10 and c100k:
        v = c100k['p50_us'] / c10['p50_us']
        add('send cost with 100 000 bindings <= 1.2 x with 10 (bus core alone)', 'default',
            '%.0f ns / %.0f ns = %.2f' % (c100k['p50_us'] * 1e3, c10['p50_us'] * 1e3, v), v <= 1.2)
    mem = find(rows, 'default', 'kbusd', 'memory per idle Ksock')
    if mem and mem['value'] > 0:
        mib = mem['value'] * 10000 / 1048576
        add('10 000 idle Ksocks cost kbusd <= 64 MiB', 'default',
            '%.0f B each -> %.1f MiB%s' % (mem['value'], mib,
                                           '' if mem['sent'] >= 10000 else
                                           ' (extrapolated from %d)' % mem['sent']),
            mib <= 64)
    else:
        add('10 000 idle Ksocks cost kbusd <= 64 MiB', 'default', 'not measured', None)
    return out


def python_peer_targets(rows, m, p, add):
    """Issue 16: a request/reply through the Python generic calls is faster
    than ZeroMQ REQ/REP and than a D-Bus method call, each driven from
    Python on both ends (bench/peers_py.py). Also prints request()'s ratio
    and, for D-Bus, the ratio to the call through dbus-daemon."""
    g = find(rows, m, 'kbus Python send+wait+read', 'round trip', p)
    req = find(rows, m, 'kbus Python request()', 'round trip', p)
    for peer, label, other in ((PY_ZMQ, 'pyzmq REQ/REP', None),
                               (PY_DBUS % 'dbus-broker', 'python3-dbus call via dbus-broker',
                                (PY_DBUS % 'dbus-daemon', 'via dbus-daemon'))):
        name = 'Python send+wait+read p50 < 1 x %s, %d B' % (label, p)
        x = find(rows, m, peer, 'round trip', p)
        if not (g and x):
            gone = [y for y in rows if y['sched'] == m and y['test'] == 'round trip' and
                    y['payload'] == p and y['system'] in (peer, 'kbus Python send+wait+read')
                    and failed(y)]
            add(name, m, 'not measured' + (' (%s: %s)' % (gone[0]['system'], gone[0]['note'])
                                           if gone else ''), None)
            continue
        v = g['p50_us'] / x['p50_us']
        extra = ''
        if req:
            extra += '; request(): %.2f' % (req['p50_us'] / x['p50_us'])
        o = find(rows, m, other[0], 'round trip', p) if other else None
        if o:
            extra += '; %s: %.2f' % (other[1], g['p50_us'] / o['p50_us'])
        add(name, m, '%.2f us / %.2f us = %.2f%s' % (g['p50_us'], x['p50_us'], v, extra), v < 1)


def acked_floor_text(g, floor, acked, acked_ep, limit):
    """For a generic-call round trip: the ratio to the relay floor of the
    acked relay (the same calls, nothing else done), and kbus's ratio to it."""
    fl = [(n, x) for n, x in (('', acked), ('epoll ', acked_ep)) if x and x['p50_us'] > 0]
    if not fl:
        return ''
    own = ['%s%.2f' % (n, x['p50_us'] / floor['p50_us']) for n, x in fl]
    best = min(x['p50_us'] for _, x in fl) / floor['p50_us']
    kb = ['%s%.2f' % (n, g['p50_us'] / x['p50_us']) for n, x in fl]
    return '; acked relay, same calls: %s%s; kbus / acked relay: %s' % (
        ', '.join(own), ' > %.1f: unreachable with these calls' % limit if best > limit else '',
        ', '.join(kb))


def acked_tput_text(rows, m, o, pp, limit):
    """For one-per-call throughput: the rate of the acked relay (one SEND ->
    id round trip per message) / the direct ping-pong rate, and kbus's rate /
    the acked relay's with pulling listeners (as kbus's)."""
    fl = []
    for name, how, label in ((ACKED, 'pull', 'pull'), (ACKED, 'push', 'push'),
                             (ACKED_EPOLL, 'pull', 'epoll pull')):
        x = find(rows, m, name, 'fan-out, one per call, ' + how, listeners=1)
        if x and x['rate'] > 0 and x['lost'] == 0:
            fl.append((label, x))
    if not fl:
        return ''
    own = ['%s %.2f' % (n, x['rate'] / pp['rate']) for n, x in fl]
    best = max(x['rate'] for _, x in fl) / pp['rate']
    kb = ['%s %.2f' % (n, o['rate'] / x['rate']) for n, x in fl if 'pull' in n]
    return '; acked relay, one SEND per message: %s%s%s' % (
        ', '.join(own), ' < %.1f: unreachable with these calls' % limit if best < limit else '',
        '; kbus / acked relay: ' + ', '.join(kb) if kb else '')


def fmt_num(v, digits=2):
    if v is None or v < 0:
        return '-'
    if v >= 100000:
        return '{:,.0f}'.format(v).replace(',', ' ')
    if v >= 100:
        return '%.0f' % v
    return '%.*f' % (digits, v)


def table(rows, tgts, meta):
    lines = []
    lines.append('kbus benchmarks - %s' % meta['date'])
    lines.append('machine: %s, %d CPUs, %s; load average before %s, after %s' % (
        meta['cpu'], meta['cpus'], meta['kernel'], meta['load_before'], meta['load_after']))
    lines.append('run: %s; peers: %s' % (meta['run'], meta['versions']))
    lines.append('x floor: round trip = p50 / AF_UNIX seqpacket relay p50 (same payload; lower '
                 'is better); fan-out = msgs/s per listener / AF_UNIX relay fan-out (same '
                 'listeners; higher is better)')
    lines.append('each row: the best of %s interleaved rounds (lowest p50, highest rate); '
                 'lost = all rounds; waited %d s in all for other work on the machine to '
                 'calm down' % (meta.get('rounds', 1), meta.get('waited', 0)))
    lines.append('')
    hdr = '%-7s %-36s %-36s %7s %9s %9s %12s %6s %7s' % (
        'sched', 'system', 'test', 'payload', 'p50 us', 'p99 us', 'msgs/s/lstn', 'lost',
        'x floor')
    lines.append(hdr)
    lines.append('-' * len(hdr))
    notes = []
    for x in rows:
        test = x['test']
        if x['listeners'] and x['listeners'] not in (0,) and 'fan-out' in test and \
                str(x['listeners']) not in test:
            test += ' -> %d' % x['listeners']
        if x['unit'] == 'bytes':
            rate = '%s B' % fmt_num(x['value'], 0)
        else:
            rate = fmt_num(x['rate'], 0) if x['rate'] > 0 else '-'
        mark = ''
        note = x['note']
        if x.get('busy', 0) > Runner.QUIET:
            note = ('measured while other work kept %d%% of the CPUs busy; ' % (100 * x['busy'])
                    + note).rstrip('; ')
        if note:
            notes.append(note)
            mark = ' [%d]' % len(notes)
        lines.append('%-7s %-36s %-36s %7s %9s %9s %12s %6s %7s%s' % (
            x['sched'], x['system'][:36], test[:36],
            ('%d B' % x['payload']) if x['payload'] else '-',
            fmt_num(x['p50_us']), fmt_num(x['p99_us']), rate,
            str(x['lost']) if x['lost'] >= 0 else '-',
            ('%.2f' % x['ratio']) if x.get('ratio') else '-', mark))
    lines.append('')
    lines.append('Notes:')
    for i, n in enumerate(notes, 1):
        lines.append('  [%d] %s' % (i, n))
    lines.append('')
    lines.append('Targets (issues 7 and 16), each a ratio in this run:')
    w = max(len(t['target']) for t in tgts) if tgts else 10
    for t in tgts:
        lines.append('  %-7s %-*s  %-6s  %s' % (t['sched'], w, t['target'], t['verdict'],
                                               t['measured']))
    return '\n'.join(lines) + '\n'


def loadavg():
    with open('/proc/loadavg') as f:
        return ' '.join(f.read().split()[:3])


def versions():
    v = []
    for cmd, rx in ((['dbus-daemon', '--version'], r'(\d+\.\d+\.\d+)'),
                    (['dbus-broker', '--version'], r'(\d+)'),
                    (['mosquitto', '-h'], r'version (\S+)')):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
            m = re.search(rx, out.stdout + out.stderr)
            if m:
                v.append('%s %s' % (cmd[0], m.group(1)))
        except (OSError, subprocess.TimeoutExpired):
            pass
    try:
        out = subprocess.run(['pkg-config', '--modversion', 'libzmq'], capture_output=True,
                             text=True, timeout=5)
        if out.returncode == 0:
            v.append('libzmq ' + out.stdout.strip())
    except OSError:
        pass
    import importlib.metadata
    for dist in ('pyzmq', 'dbus-python'):  # bench/peers_py.py, under this python3
        try:
            v.append('%s %s' % (dist, importlib.metadata.version(dist)))
        except importlib.metadata.PackageNotFoundError:
            pass
    return ', '.join(v) or 'none found'


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--build', default=os.path.join(ROOT, 'build-bench'))
    p.add_argument('--quick', action='store_true', help='fewer iterations (a minute or two)')
    p.add_argument('--only', default='', help='run only benchmarks whose command or system '
                   'contains one of these comma-separated words')
    p.add_argument('--skip', default='', help='leave out benchmarks whose command or system '
                   'contains one of these comma-separated words (after --only)')
    p.add_argument('--modes', default='default,pinned')
    p.add_argument('--out', default=os.path.join(HERE, 'results'))
    p.add_argument('--no-wait', dest='wait_quiet', action='store_false',
                   help='do not wait for other work on the machine to calm down')
    args = p.parse_args()
    args.only = [w for w in args.only.split(',') if w]
    args.skip = [w for w in args.skip.split(',') if w]
    build = os.path.abspath(args.build)
    modes = [m for m in args.modes.split(',') if m]
    sz = sizes(args.quick)
    meta = dict(date=datetime.datetime.now().strftime('%Y-%m-%d %H:%M'),
                cpus=os.cpu_count(), kernel=platform.release(),
                load_before=loadavg(), run='quick' if args.quick else 'full',
                versions=versions())
    meta['cpu'] = 'unknown CPU'
    try:
        with open('/proc/cpuinfo') as f:
            m = re.search(r'model name\s*:\s*(.*)', f.read())
            if m:
                meta['cpu'] = m.group(1).strip()
    except OSError:
        pass
    r = Runner(args)
    start = time.monotonic()
    work = tempfile.mkdtemp(prefix='kbus-bench-')
    try:
        for mode in modes:
            mwork = os.path.join(work, mode)
            os.makedirs(mwork)
            run_mode(r, mode, build, mwork, sz)
        run_core_send(r, build, args.quick)
        run_memory(r, build, work, sz)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta['load_after'] = loadavg()
    meta['rounds'] = sz['rounds']
    meta['waited'] = round(r.waited)
    meta['seconds'] = round(time.monotonic() - start)
    add_ratios(r.rows)
    tgts = targets(r.rows, modes)
    text = table(r.rows, tgts, meta)
    text += '\n(%d s)\n' % meta['seconds']
    sys.stdout.write(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, 'latest.txt'), 'w') as f:
        f.write(text)
    with open(os.path.join(args.out, 'latest.json'), 'w') as f:
        json.dump(dict(meta=meta, rows=r.rows, targets=tgts), f, indent=1)


if __name__ == '__main__':
    main()
