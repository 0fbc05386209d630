#!/usr/bin/env python3
"""Runs a private dbus-broker for the benchmarks (bench/run.py starts it and
stops it by PID with SIGTERM).

    dbus_broker.py --socket PATH --config FILE

dbus-broker is the broker; dbus-broker-launch is its controller, which
normally runs under systemd: it takes its listening socket by socket
activation (LISTEN_FDS), logs to the journal's socket, and talks to a parent
bus. Here this script plays systemd's part, privately:

* the listening socket PATH is made here and handed over as fd 3;
* if /run/systemd/journal/socket does not exist, the script re-runs itself
  in a private mount namespace (unshare -m, root only) with a tmpfs on
  /run/systemd holding a journal socket whose messages it discards;
* the parent bus is a private dbus-daemon with no services.

Nothing outside the temporary directory of PATH is changed. On SIGTERM the
script stops the launcher and the parent bus by PID and exits.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

JOURNAL = '/run/systemd/journal/socket'

PARENT_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--socket', required=True)
    p.add_argument('--config', required=True)
    p.add_argument('--in-namespace', action='store_true')
    args = p.parse_args()

    launcher = shutil.which('dbus-broker-launch')
    if not launcher:
        sys.exit('dbus-broker-launch is not installed')

    if not os.path.exists(JOURNAL) and not args.in_namespace:
        # exec keeps our PID, so the caller still stops us by it.
        unshare = shutil.which('unshare')
        if not unshare:
            sys.exit('no journal socket and no unshare(1)')
        os.execv(unshare, [unshare, '-m', '--propagation', 'private',
                           sys.executable, os.path.abspath(__file__),
                           '--socket', args.socket, '--config', args.config,
                           '--in-namespace'])

    if args.in_namespace:
        subprocess.check_call(['mount', '-t', 'tmpfs', 'kbus-bench',
                               '/run/systemd'])
        os.makedirs(os.path.dirname(JOURNAL), exist_ok=True)
        journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        journal.bind(JOURNAL)

        def drain():
            while True:
                journal.recv(1 << 16)
        threading.Thread(target=drain, daemon=True).start()

    work = os.path.dirname(os.path.abspath(args.socket))
    parent_sock = os.path.join(work, 'dbus-broker-parent.sock')
    parent_conf = os.path.join(work, 'dbus-broker-parent.conf')
    with open(parent_conf, 'w') as f:
        f.write(PARENT_CONF % parent_sock)
    parent = subprocess.Popen(['dbus-daemon', '--config-file=' + parent_conf,
                               '--nofork'], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not os.path.exists(parent_sock):
        if time.monotonic() > deadline or parent.poll() is not None:
            sys.exit('the parent dbus-daemon did not start')
        time.sleep(0.01)

    try:
        os.unlink(args.socket)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(args.socket)
    listener.listen(1024)

    env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS='unix:path=' + parent_sock)
    env.pop('NOTIFY_SOCKET', None)
    fd = listener.fileno()
    env['LISTEN_FDS'] = '1'
    # LISTEN_PID must be the launcher's own PID: set it in the child.
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(fd, 3)
            os.set_inheritable(3, True)
            env['LISTEN_PID'] = str(os.getpid())
            os.execve(launcher, [launcher, '--scope', 'user', '--config-file',
                                 args.config], env)
        finally:
            os._exit(127)
    listener.close()

    def children(p):
        kids = []
        for d in os.listdir('/proc'):
            if d.isdigit():
                try:
                    with open('/proc/%s/stat' % d) as f:
                        st = f.read()
                except OSError:
                    continue
                if int(st[st.rindex(')') + 2:].split()[1]) == p:
                    kids.append(int(d))
        return kids

    def stop(*_):
        # The launcher does not take its broker down on SIGTERM: stop the
        # broker (the launcher's child) by PID first.
        broker = children(pid)
        for p in broker + [pid, parent.pid]:
            try:
                os.kill(p, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        parent.wait()
        for k in broker:  # not our child: wait for it to go
            for _ in range(500):
                if not os.path.exists('/proc/%d' % k):
                    break
                time.sleep(0.01)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _, status = os.waitpid(pid, 0)
    parent.terminate()
    parent.wait()
    sys.exit('dbus-broker-launch exited (status %d)' % status)


if __name__ == '__main__':
    main()
