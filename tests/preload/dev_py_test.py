"""dev_py_test - the /dev/kbusN device from Python, through kbus_dev (the
original Python module's way: open(), fcntl.ioctl(), os.read(), os.write()).

Run under `kbus run` against a kbusd with 3 fresh buses
(tests/preload/preload_test.cpp):

    python3 dev_py_test.py ioctls | rw_poll | fork | with_package

Exits 0 if every check passed, else 1 listing each failed check.
"""

import array
import ctypes
import errno
import fcntl
import os
import select
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kbus_dev  # noqa: E402
from kbus_dev import Ksock, Message  # noqa: E402

checks = 0
failures = 0


def check(cond, what):
    global checks, failures
    checks += 1
    if not cond:
        failures += 1
        sys.stderr.write('CHECK failed: %s\n' % what)


def check_eq(a, b, what):
    check(a == b, '%s: %r != %r' % (what, a, b))


def check_errno(e, f, *args):
    """f(*args) must raise OSError with errno e."""
    global checks, failures
    checks += 1
    try:
        f(*args)
    except OSError as exc:
        if exc.errno != e:
            failures += 1
            sys.stderr.write('CHECK failed: %s%r raised errno %s, expected %s\n'
                             % (f.__name__, args, errno.errorcode.get(exc.errno), errno.errorcode[e]))
        return
    failures += 1
    sys.stderr.write('CHECK failed: %s%r did not fail (expected %s)\n'
                     % (f.__name__, args, errno.errorcode[e]))


def readiness(k):
    r, w, _ = select.select([k], [k], [], 0)
    return (k in r, k in w)


# ---- every ioctl and its error paths (KBUS-SPEC.md §4.5, §4.6) ----

def ioctls():
    f = Ksock(0, 'rw')
    s = Ksock(0, 'rw')
    check_eq(f.ksock_id(), 1, 'first KSOCKID')
    check_eq(s.ksock_id(), 2, 'second KSOCKID')
    check_eq(f.reset(), 0, 'RESET')

    # BIND / UNBIND
    check_eq(f.bind('$.Py.A'), 0, 'BIND')
    check_errno(errno.EBADMSG, f.bind, '')
    check_errno(errno.ENAMETOOLONG, f.bind, '$.' + 'x' * 999)
    check_errno(errno.EBADMSG, f.bind, '$.Py.')
    check_eq(f.bind('$.Py.R', True), 0, 'BIND replier')
    check_errno(errno.EADDRINUSE, s.bind, '$.Py.R', True)
    check_errno(errno.EBADMSG, f.bind, '$.KBUS.ReplierBindEvent', True)
    # A bad name pointer: EFAULT (the structure built by hand).
    bad = kbus_dev._BindStruct(0, 5, None)
    ctypes.cast(ctypes.addressof(bad) + 8, ctypes.POINTER(ctypes.c_void_p))[0] = 16
    check_errno(errno.EFAULT, fcntl.ioctl, f.fd, kbus_dev.IOC_BIND, bad)
    check_eq(f.unbind('$.Py.A'), 0, 'UNBIND')
    check_errno(errno.EINVAL, f.unbind, '$.Py.A')
    check_errno(errno.EINVAL, f.unbind, '$.Py.R', False)

    # REPLIER
    check_eq(s.find_replier('$.Py.R'), 1, 'REPLIER finds f')
    check_eq(s.find_replier('$.Py.Nobody'), None, 'REPLIER: none')
    check_errno(errno.ENAMETOOLONG, s.find_replier, '')

    # NEXTMSG / LENLEFT / SEND / LASTSENT
    check_eq(s.next_msg(), 0, 'NEXTMSG on an empty queue')
    check_eq(s.len_left(), 0, 'LENLEFT with no message')
    check_errno(errno.ENOMSG, f.send)
    check_eq(s.bind('$.Py.Msg'), 0, 'BIND $.Py.Msg')
    mid = f.send_msg(Message('$.Py.Msg', b'dada'))
    check(mid[0] == 0 and mid[1] > 0, 'SEND id %r' % (mid,))
    check_eq(f.last_msg_id(), mid, 'LASTSENT')
    check_eq(s.num_messages(), 1, 'NUMMSGS')
    length = s.next_msg()
    check_eq(length, kbus_dev.entire_len(8, 4), 'NEXTMSG length')
    check_eq(s.len_left(), length, 'LENLEFT = length')
    m = s.read_msg(length)
    check_eq((m.name, m.data, m.from_, m.id), (b'$.Py.Msg', b'dada', 1, mid), 'message read')
    check_errno(errno.EADDRNOTAVAIL, f.send_msg, Message('$.Py.NoReplier', flags=kbus_dev.WANT_A_REPLY))

    # DISCARD
    f.write_msg(Message('$.Py.Msg'))
    check_eq(f.discard(), 0, 'DISCARD')
    check_errno(errno.ENOMSG, f.send)

    # MAXMSGS / NUMMSGS / UNREPLIEDTO
    check_eq(s.set_max_messages(0), 100, 'MAXMSGS query')
    check_eq(s.set_max_messages(7), 7, 'MAXMSGS set')
    check_eq(s.bind('$.Py.Req', True), 0, 'BIND replier $.Py.Req')
    rid = f.send_msg(Message('$.Py.Req', b'q', flags=kbus_dev.WANT_A_REPLY))
    req = s.read_next_msg()
    check(req is not None and req.flags & kbus_dev.WANT_YOU_TO_REPLY, 'the replier was asked')
    check_eq(s.num_unreplied_to(), 1, 'UNREPLIEDTO before the reply')
    s.send_msg(Message(req.name, b'a', to=req.from_, in_reply_to=req.id))
    check_eq(s.num_unreplied_to(), 0, 'UNREPLIEDTO after it')
    rep = f.read_next_msg()
    check(rep is not None and rep.in_reply_to == rid and rep.data == b'a', 'the reply')

    # MSGONLYONCE / VERBOSE / REPORTREPLIERBINDS: previous value out
    check_eq(f.want_messages_once(), 0, 'MSGONLYONCE query')
    check_eq(f.want_messages_once(True), 0, 'MSGONLYONCE on')
    check_eq(f.want_messages_once(False), 1, 'MSGONLYONCE off')
    check_errno(errno.EINVAL, f._u32, kbus_dev.IOC_MSGONLYONCE, 2)
    check_eq(f.kernel_module_verbose(True), 0, 'VERBOSE on')
    check_eq(f.kernel_module_verbose(), 1, 'VERBOSE query')
    check_errno(errno.EINVAL, f._u32, kbus_dev.IOC_VERBOSE, 3)
    check_eq(f.report_replier_binds(True), 0, 'REPORTREPLIERBINDS on')
    check_eq(f.num_messages(), 2, 'a bind event per replier binding')
    ev = f.read_next_msg()
    check(ev is not None and ev.name == b'$.KBUS.ReplierBindEvent', 'bind event')
    check_eq(f.report_replier_binds(False), 1, 'REPORTREPLIERBINDS off')
    check_errno(errno.EINVAL, f._u32, kbus_dev.IOC_REPORTREPLIERBINDS, 4)

    # NEWDEVICE / MAXMSGSIZE
    check_eq(f.new_device(), 3, 'NEWDEVICE')
    Ksock(3, 'r').close()
    check_eq(f.set_max_message_size(0), 1024, 'MAXMSGSIZE query')
    check(f.set_max_message_size(1) >= 1024, 'MAXMSGSIZE absolute')
    check_errno(errno.EINVAL, f.set_max_message_size, 99)
    check_eq(f.set_max_message_size(4096), 4096, 'MAXMSGSIZE set')

    # Not KBUS operations: ENOTTY; no such bus: ENOENT; EBADF by mode.
    check_errno(errno.ENOTTY, fcntl.ioctl, f.fd, kbus_dev._IO('k', 19), 0)
    check_errno(errno.ENOTTY, fcntl.ioctl, f.fd, kbus_dev._IOR('k', 0), array.array('I', [0]))
    check_eq(os.isatty(f.fileno()), False, 'isatty')
    check_errno(errno.ENOENT, Ksock, 9, 'r')
    r = Ksock(0, 'r')
    check_errno(errno.EBADF, r.write_data, b'x')
    r.close()
    w = Ksock(0, 'w')
    check_errno(errno.EBADF, w.read_data, 10)
    w.close()
    f.close()
    s.close()
    check_errno(errno.EBADF, os.read, f.fileno() if not f.fd.closed else 1000, 1)


# ---- partial reads and writes, LENLEFT, NEXTMSG, poll (§4.2-§4.4) ----

def rw_poll():
    lst = Ksock(0, 'rw')
    snd = Ksock(0, 'rw')
    lst.bind('$.Py.Part')
    check_eq(readiness(lst), (False, True), 'empty: writable only')
    ro = Ksock(0, 'r')
    check_eq(readiness(ro), (False, False), 'read-only: never writable')

    data = bytes(range(256)) * 3
    b = Message('$.Py.Part', data).to_bytes()
    for i in range(0, len(b), 5):            # writes of 5 bytes
        check_eq(snd.write_data(b[i:i + 5]), len(b[i:i + 5]), 'partial write')
    mid = snd.send()
    check_eq(readiness(lst), (True, True), 'queued: readable')
    length = lst.next_msg()
    check_eq(length, len(b), 'NEXTMSG length')
    check_eq(readiness(lst), (False, True), 'current message not counted')
    got = b''
    while True:
        check_eq(lst.len_left(), length - len(got), 'LENLEFT at %d' % len(got))
        piece = lst.read_data(7)
        if not piece:
            break
        check(len(piece) == min(7, length - len(got)), 'read of 7 at %d' % len(got))
        got += piece
    m = Message.from_bytes(got)
    check_eq((m.data, m.id), (data, mid), 'message read in pieces')
    check_eq(lst.read_data(10), b'', 'EOF after the message')

    # NEXTMSG discards the current message.
    snd.send_msg(Message('$.Py.Part', b'one'))
    snd.send_msg(Message('$.Py.Part', b'two'))
    lst.next_msg()
    lst.read_data(3)
    check_eq(lst.read_next_msg().data, b'two', 'NEXTMSG moved on')

    # Write errors: the partial message is discarded.
    bad = bytearray(Message('$.Py.Part').to_bytes())
    bad[0] = 0
    check_errno(errno.EINVAL, snd.write_data, bytes(bad))
    check_errno(errno.ENOMSG, snd.send)
    check_errno(errno.EMSGSIZE, snd.write_data, Message('$.Py.Part').to_bytes() + b'junk')
    check_errno(errno.EBADMSG, snd.write_data, Message('$.Py.bad.').to_bytes())

    # ALL_OR_WAIT (§5.5): pending send, not writable, EALREADY; then room.
    lst.set_max_messages(1)
    snd.send_msg(Message('$.Py.Part', b'fill'))
    check_errno(errno.EAGAIN, snd.send_msg, Message('$.Py.Part', b'wait', flags=kbus_dev.ALL_OR_WAIT))
    pending = snd.last_msg_id()
    check_eq(readiness(snd), (False, False), 'pending: not writable')
    check_errno(errno.EALREADY, snd.write_data, b'x')
    check_eq(lst.read_next_msg().data, b'fill', 'room made')
    _, w, _ = select.select([], [snd], [], 10)
    check(snd in w, 'writable again once delivered')
    m = lst.read_next_msg()
    check(m is not None and m.data == b'wait' and m.id == pending, 'the pending message arrived')
    for k in (lst, snd, ro):
        k.close()


# ---- fork: the inherited descriptor is the parent's (docs/decisions.md D19) ----

def fork():
    k = Ksock(0, 'rw')
    k.bind('$.Py.Fork')
    my_id = k.ksock_id()
    pid = os.fork()
    if pid == 0:
        bad = 0
        try:
            k.ksock_id()
            bad += 1
        except OSError as e:
            bad += e.errno != errno.ENXIO
        try:
            k.read_data(1)
            bad += 1
        except OSError as e:
            bad += e.errno != errno.ENXIO
        own = Ksock(0, 'rw')
        bad += own.ksock_id() == my_id
        own.send_msg(Message('$.Py.Fork', b'child'))
        own.close()
        k.close()
        os._exit(1 if bad else 0)
    _, status = os.waitpid(pid, 0)
    check(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, 'the child saw ENXIO')
    check_eq(k.ksock_id(), my_id, 'parent Ksock still open')
    m = k.read_next_msg()
    check(m is not None and m.data == b'child', "the child's message reached the parent")
    k.close()


# ---- the kbus package (its own sockets) beside the device, in one program ----

def with_package():
    import kbus   # python/kbus, on PYTHONPATH
    pk = kbus.Ksock(0, 'rw')
    pk.bind('$.Py.Both')
    dev = Ksock(0, 'rw')
    dev.bind('$.Py.Both')
    dev.send_msg(Message('$.Py.Both', b'from the device'))
    m = pk.wait_for_msg(10)
    check(m is not None and m.data == b'from the device', 'the package got the device message')
    pk.send_msg(kbus.Announcement('$.Py.Both', b'from the package'))
    got = [dev.read_next_msg().data, dev.read_next_msg().data]
    check_eq(got, [b'from the device', b'from the package'], 'the device got both')
    pk.close()
    dev.close()


if __name__ == '__main__':
    what = sys.argv[1] if len(sys.argv) > 1 else ''
    scenarios = {'ioctls': ioctls, 'rw_poll': rw_poll, 'fork': fork, 'with_package': with_package}
    if what not in scenarios:
        sys.stderr.write('usage: dev_py_test.py %s\n' % '|'.join(scenarios))
        sys.exit(2)
    scenarios[what]()
    print('%d checks, %d failed' % (checks, failures))
    sys.exit(1 if failures else 0)
