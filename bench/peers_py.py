#!/usr/bin/python3
"""The peers of kbus's Python client, driven from Python on both ends as a
Python user would (issue 16). Prints RESULT lines as bench/kbus_py.py does,
with the same summary maths (bench/bench_py.py).

    peers_py.py zmq-rtt  --dir D [--payload B] [--iterations N]
        ZeroMQ REQ/REP through pyzmq (Debian's python3-zmq) over ipc:// in D:
        a REP server in a child process echoes every request.
    peers_py.py dbus-rtt --address ADDR [--system NAME] [--payload B] [--iterations N]
        D-Bus through python3-dbus on the bus at ADDR (a dbus-daemon or a
        dbus-broker that bench/run.py started): a service in a child process
        (its own connection, a GLib main loop, a well-known name) exports
        Echo(ay) -> ay; the client calls it with call_blocking(), the
        fastest synchronous call python3-dbus has.

Both: a tenth as many untimed warm-up round trips (the first one checks the
echo), then N timed ones. Every wait is bounded: the server must say it is
ready within %(ready)d s, each call must be answered within %(call)d s, and the
server ends when the client closes its lifeline (or dies). A missing module
names the Debian package to install; a failure exits non-zero with what went
wrong.
"""

import argparse
import os
import select
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_py import Child, emit, fail, time_round_trips  # noqa: E402

PROG = 'peers_py.py'
READY_TIMEOUT = 30      # s: the server forks, connects and says it serves
CALL_TIMEOUT = 10       # s: one round trip, on a machine however busy
LIFELINE_POLL_MS = 500  # the REP server looks at its lifeline this often when idle
STOP_TIMEOUT = 10       # s: the server ends once its lifeline is closed

__doc__ %= dict(ready=READY_TIMEOUT, call=CALL_TIMEOUT)

ZMQ_SYSTEM = 'ZeroMQ REQ/REP, Python (pyzmq)'
DBUS_NAME = 'org.kbus.BenchPy'
DBUS_PATH = '/org/kbus/Bench'
DBUS_IFACE = 'org.kbus.Bench'


def need(module, package):
    """Imports `module`, or exits saying which Debian package brings it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as e:
        fail(PROG, 'cannot import %s (%s): install Debian\'s %s '
             '(apt-get install %s), or run scripts/bench.sh, which does'
             % (module, e, package, package), code=3)


def lifeline_closed(fd):
    return bool(select.select([fd], [], [], 0)[0])


def start(body, what):
    child = Child(body)
    why = child.wait_ready(READY_TIMEOUT)
    if why:
        fail(PROG, '%s did not start: %s' % (what, why))
    return child


def finish(child, what):
    how = child.stop(STOP_TIMEOUT)
    if how != 'exit status 0':
        fail(PROG, '%s ended badly: %s' % (what, how))


# ------------------------------------------------------------------ ZeroMQ

def zmq_server(zmq, endpoint, ready, lifeline):
    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    rep.setsockopt(zmq.RCVTIMEO, LIFELINE_POLL_MS)
    rep.setsockopt(zmq.SNDTIMEO, CALL_TIMEOUT * 1000)
    rep.bind(endpoint)
    ready()
    while True:
        try:
            m = rep.recv()
        except zmq.Again:
            if lifeline_closed(lifeline):
                break
            continue
        rep.send(m)
        if not m:  # the client's last word
            break
    rep.close()
    ctx.term()


def zmq_rtt(args):
    zmq = need('zmq', 'python3-zmq')
    endpoint = 'ipc://' + os.path.join(args.dir, 'zmq-py-rtt')
    what = 'the pyzmq REP server on ' + endpoint
    child = start(lambda ready, life: zmq_server(zmq, endpoint, ready, life), what)
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.setsockopt(zmq.RCVTIMEO, CALL_TIMEOUT * 1000)
    req.setsockopt(zmq.SNDTIMEO, CALL_TIMEOUT * 1000)
    req.connect(endpoint)
    out = b'x' * args.payload

    def once():
        req.send(out)
        return req.recv()

    try:
        if once() != out:
            fail(PROG, '%s did not echo the request' % what)
        stats = time_round_trips(args.iterations, once)
        req.send(b'')
        req.recv()
    except zmq.Again:
        child.stop(0)
        fail(PROG, 'no reply from %s within %d s' % (what, CALL_TIMEOUT))
    req.close()
    ctx.term()
    finish(child, what)
    emit(system=ZMQ_SYSTEM, test='round trip', payload=args.payload, **stats)


# ------------------------------------------------------------------ D-Bus

def dbus_server(address, ready, lifeline):
    import dbus.service
    from dbus.mainloop.glib import DBusGMainLoop
    from gi.repository import GLib

    loop = GLib.MainLoop()
    bus = dbus.bus.BusConnection(address, mainloop=DBusGMainLoop())

    class Echo(dbus.service.Object):
        @dbus.service.method(DBUS_IFACE, in_signature='ay', out_signature='ay',
                             byte_arrays=True)
        def Echo(self, data):
            return data

    Echo(bus, DBUS_PATH)
    # Raises NameExistsException if another connection owns the name.
    name = dbus.service.BusName(DBUS_NAME, bus, do_not_queue=True)
    GLib.io_add_watch(lifeline, GLib.PRIORITY_DEFAULT, GLib.IO_IN | GLib.IO_HUP,
                      lambda *_: loop.quit() or False)
    ready()
    loop.run()
    del name
    bus.close()


def dbus_rtt(args):
    dbus = need('dbus', 'python3-dbus')
    need('dbus.mainloop.glib', 'python3-dbus')
    need('gi.repository.GLib', 'python3-gi')
    import dbus.bus
    import dbus.exceptions
    import dbus.service  # noqa: F401  (before fork: the child only uses it)

    what = 'the python3-dbus service %s on %s' % (DBUS_NAME, args.address)
    child = start(lambda ready, life: dbus_server(args.address, ready, life), what)
    out = b'x' * args.payload
    try:
        bus = dbus.bus.BusConnection(args.address)
        call = bus.call_blocking

        def once():
            return call(DBUS_NAME, DBUS_PATH, DBUS_IFACE, 'Echo', 'ay', (out,),
                        timeout=CALL_TIMEOUT, byte_arrays=True)

        if once() != out:
            fail(PROG, '%s did not echo the request' % what)
        stats = time_round_trips(args.iterations, once)
    except dbus.exceptions.DBusException as e:
        child.stop(0)
        fail(PROG, '%s: %s' % (what, e))
    bus.close()
    finish(child, what)
    emit(system=args.system, test='round trip', payload=args.payload, **stats)


def positive(text):
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError('must be at least 1, not %s' % text)
    return v


def main():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n')[0],
                                epilog=__doc__.split('\n\n', 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('cmd', choices=['zmq-rtt', 'dbus-rtt'])
    p.add_argument('--dir', help='zmq-rtt: the directory of the ipc:// endpoint')
    p.add_argument('--address', help='dbus-rtt: the bus address, e.g. unix:path=/tmp/x.sock')
    p.add_argument('--system', default='D-Bus, Python (python3-dbus)',
                   help='dbus-rtt: the system name of the row')
    p.add_argument('--payload', type=positive, default=64)
    p.add_argument('--iterations', type=positive, default=20000)
    args = p.parse_args()
    if args.cmd == 'zmq-rtt':
        if not args.dir or not os.path.isdir(args.dir):
            p.error('zmq-rtt needs --dir, an existing directory (got %r)' % args.dir)
        zmq_rtt(args)
    else:
        if not args.address:
            p.error('dbus-rtt needs --address, the address of a running bus')
        dbus_rtt(args)


if __name__ == '__main__':
    main()
