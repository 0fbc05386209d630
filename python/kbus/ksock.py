"""Ksock: one client endpoint on a KBUS bus, talking to kbusd.

A Ksock is a connection to the Unix-domain socket ``DIR/kbusN`` of kbusd,
speaking the protocol of docs/protocol.md: one request frame per operation,
answered by exactly one reply frame. Its ``fileno()`` is the *poll fd* that
kbusd hands over when first asked (POLLFD, so that a Ksock nobody polls costs
kbusd one descriptor): readable exactly when the Ksock's message queue is
not empty, writable exactly when it is open for writing and no ALL_OR_WAIT
send is pending -- so a Ksock can be given to ``select``/``poll`` just as the
original ``/dev/kbusN`` file could.
"""

import errno
import math
import os
import select
import socket
import struct
import threading
import time
from collections import deque

from kbus.messages import (Message, MessageId, MSG_HEADER_LEN,  # noqa: F401
                           _message_from_entire, _ZEROS, _END_GUARD_BYTES,
                           _NAME_PTR_OFF, _PTR_SIZE)

# Operation numbers (docs/protocol.md section 4).
_OP_RESET = 1
_OP_BIND = 2
_OP_UNBIND = 3
_OP_KSOCKID = 4
_OP_REPLIER = 5
_OP_NEXTMSG = 6
_OP_LENLEFT = 7
_OP_SEND = 8
_OP_DISCARD = 9
_OP_LASTSENT = 10
_OP_MAXMSGS = 11
_OP_NUMMSGS = 12
_OP_UNREPLIEDTO = 13
_OP_MSGONLYONCE = 14
_OP_VERBOSE = 15
_OP_NEWDEVICE = 16
_OP_REPORTREPLIERBINDS = 17
_OP_MAXMSGSIZE = 18
_OP_HELLO = 64
_OP_WRITE = 65
_OP_READ = 66
_OP_SENDMSG = 67
_OP_NEXTREAD = 68
_OP_WAITREAD = 69
_OP_BINDINGS = 70
_OP_STATS = 71
_OP_BINDINGSPART = 78
_OP_STATSPART = 79
_OP_REQUEST = 72
_OP_SENDBATCH = 74
_OP_READBATCH = 75
_OP_POLLFD = 76
_OP_MONITOR = 77  # docs/decisions.md D25

PROTOCOL_VERSION = 1
_MODE_READ = 1
_MODE_WRITE = 2
_MODE_LAZY_POLLFD = 4  # the poll fd comes with POLLFD, when first needed
_MAX_FRAME_LEN = 1 << 20          # of a request frame, after its length
_MAX_PAYLOAD = _MAX_FRAME_LEN - 4  # of a request frame
_NO_POINTERS = bytes(2 * _PTR_SIZE)
_MAX_NAME = _MAX_PAYLOAD - 8       # longer names cannot even be sent

# Host byte order, standard sizes.
_REQ = struct.Struct('=II')         # length, op
_REP = struct.Struct('=Ii')         # length, status
_U32 = struct.Struct('=I')
_REQ_U32 = struct.Struct('=III')    # length, op, u32
_REQ_U32_2 = struct.Struct('=IIII')  # length, op, u32, u32
_TWO_U32 = struct.Struct('=II')
_REPORT_PART = struct.Struct('=IIII')  # bus, pos low, pos high, max bytes
_REPORT_NEXT = struct.Struct('=III')   # next bus, next pos low, high
_REPORT_FIRST = 0xFFFFFFFFFFFFFFFF
_REPORT_DONE = 0xFFFFFFFF


def _frame(op, payload=b''):
    """A request frame."""
    return _REQ.pack(4 + len(payload), op) + payload


def _u32_frame(op, value):
    return _REQ_U32.pack(8, op, value)


def _too_long(name):
    if len(name) > _MAX_NAME:
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))


def _bind_frame(op, is_replier, name):
    """BIND / UNBIND request frame (name as bytes)."""
    _too_long(name)
    return _REQ_U32_2.pack(12 + len(name), op, is_replier, len(name)) + name


def _replier_frame(name):
    _too_long(name)
    return _REQ_U32.pack(8 + len(name), _OP_REPLIER, len(name)) + name


def _hello_frame(mode_bits, header_len=MSG_HEADER_LEN):
    return _frame(_OP_HELLO, struct.pack('=III', PROTOCOL_VERSION, mode_bits,
                                         header_len))


_F_RESET = _frame(_OP_RESET)
_F_KSOCKID = _frame(_OP_KSOCKID)
_F_NEXTMSG = _frame(_OP_NEXTMSG)
_F_LENLEFT = _frame(_OP_LENLEFT)
_F_SEND = _frame(_OP_SEND)
_F_DISCARD = _frame(_OP_DISCARD)
_F_LASTSENT = _frame(_OP_LASTSENT)
_F_NUMMSGS = _frame(_OP_NUMMSGS)
_F_UNREPLIEDTO = _frame(_OP_UNREPLIEDTO)
_F_NEWDEVICE = _frame(_OP_NEWDEVICE)
_F_NEXTREAD = _frame(_OP_NEXTREAD)
_F_WAITREAD = _frame(_OP_WAITREAD)
_F_BINDINGS = _frame(_OP_BINDINGS)
_F_STATS = _frame(_OP_STATS)
_WRITE_HDR_FRAME = _REQ.pack(4 + MSG_HEADER_LEN, _OP_WRITE)

_EAGAIN = errno.EAGAIN


def _error(status):
    """The OSError for a negative reply status."""
    e = -status
    return OSError(e, os.strerror(e))


class DaemonGone(ConnectionResetError):
    """kbusd went away (it stopped or crashed) while this Ksock was open.

    Raised by every call on the Ksock from then on, with ``errno`` ECONNRESET
    -- never EPIPE, which KBUS uses for a Stateful Request whose replier is
    not the one it named. Open a new Ksock once kbusd is back."""


def _connection_error(err, text):
    """The exception for a broken connection: DaemonGone when the daemon hung
    up (ECONNRESET, or EPIPE from a send), else OSError."""
    if err in (errno.ECONNRESET, errno.EPIPE):
        return DaemonGone(errno.ECONNRESET,
                          'kbusd went away (%s): open the Ksock again once it '
                          'is back' % text)
    return OSError(err, text)


# Where kbusd.service serves the system's buses.
SYSTEM_KBUS_DIR = '/run/kbus'


def kbus_dir(which=None):
    """The directory holding the bus sockets (docs/protocol.md section 1):
    $KBUS_DIR, else /run/kbus for root, else $XDG_RUNTIME_DIR/kbus, else
    /tmp/kbus-<effective uid>: the rule of src/util/dirs.hpp, which kbusd
    and the C/C++ clients use (docs/decisions.md D24). Given a bus number ``which``, a user other than root
    whose directory has no socket for that bus falls back to the system
    bus directory (/run/kbus) if that has one."""
    d = os.environ.get('KBUS_DIR')
    if d:
        return d
    if os.geteuid() == 0:
        return SYSTEM_KBUS_DIR
    x = os.environ.get('XDG_RUNTIME_DIR')
    if x:
        user = os.path.join(x, 'kbus')
    else:
        user = '/tmp/kbus-%d' % os.geteuid()
    if which is not None and which >= 0:
        import stat
        name = 'kbus%d' % which

        def is_socket(directory):
            try:
                return stat.S_ISSOCK(os.stat(os.path.join(directory, name)).st_mode)
            except OSError:
                return False
        if not is_socket(user) and is_socket(SYSTEM_KBUS_DIR):
            return SYSTEM_KBUS_DIR
    return user


def _describe_uid(uid):
    """'uid 1001 (alice)', or 'uid 1001' for a uid with no name."""
    import pwd
    try:
        return 'uid %d (%s)' % (uid, pwd.getpwuid(uid).pw_name)
    except KeyError:
        return 'uid %d' % uid


def _strip_slashes(d):
    while len(d) > 1 and d.endswith('/'):
        d = d[:-1]
    return d


def _parent_dir(d):
    d = _strip_slashes(d)
    slash = d.rfind('/')
    if slash < 0:
        return '.'
    if slash == 0:
        return '/'
    return _strip_slashes(d[:slash])


def _kind_of(mode):
    import stat
    if stat.S_ISLNK(mode):
        return 'a symbolic link'
    if stat.S_ISREG(mode):
        return 'a regular file'
    if stat.S_ISSOCK(mode):
        return 'a socket'
    if stat.S_ISFIFO(mode):
        return 'a FIFO'
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return 'a device'
    return 'not a directory'


def bus_dir_problem(directory):
    """Whether the bus directory ``directory`` is safe to use
    (docs/reliability.md section 9): None if it is, or does not exist; else
    one line naming the path, what was found, what was expected and the fix.

    The rule of src/util/dirs.hpp, which kbusd and the C/C++ clients use,
    judged on lstat (a symbolic link is never followed): a directory; owned
    by the effective uid or root, or else held in a parent directory owned
    by root that nobody else may write to (only root can have made it or
    handed it over, as /run/kbus to kbusd.service's user); and not writable
    by its group or others, who could otherwise replace the bus sockets."""
    import stat
    d = _strip_slashes(directory)
    try:
        st = os.lstat(d)
    except OSError:
        return None     # missing: the open fails with ENOENT
    euid = os.geteuid()
    parent = None
    if st.st_uid not in (euid, 0):  # the parent matters only then
        try:
            parent = os.stat(_parent_dir(d))
        except OSError:
            pass
    head = 'unsafe bus directory %s: ' % d
    own = 'set KBUS_DIR (kbusd: --dir) to a directory of your own'
    expected = 'root' if euid == 0 else _describe_uid(euid) + ' or root'
    if not stat.S_ISDIR(st.st_mode):
        return (head + 'it is %s (owner %s), expected a directory owned by '
                '%s: remove it, or %s'
                % (_kind_of(st.st_mode), _describe_uid(st.st_uid), expected,
                   own))
    writable = stat.S_IWGRP | stat.S_IWOTH
    if st.st_uid not in (euid, 0):
        given_by_root = (parent is not None and parent.st_uid == 0 and
                         not parent.st_mode & writable)
        if not given_by_root:
            return (head + 'it is owned by %s, expected %s (or a directory '
                    'that root made for its owner, in a parent only root may '
                    'write): remove it, or %s'
                    % (_describe_uid(st.st_uid), expected, own))
    if st.st_mode & writable:
        who = 'others' if st.st_mode & stat.S_IWOTH else 'its group'
        return (head + 'it is writable by %s (mode 0%o), so they could '
                'replace the bus sockets: chmod go-w %s, or %s'
                % (who, st.st_mode & 0o7777, d, own))
    return None


# ioctl numbers of the original, for reference (Ksock.IOC_*).
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = 8
_IOC_SIZESHIFT = 16
_IOC_DIRSHIFT = 30
_IOC_NONE = 0
_IOC_WRITE = 1
_IOC_READ = 2
_PTR_SIZE = struct.calcsize('P')


def _split_messages(data, count):
    """The ``count`` entire messages concatenated in ``data``."""
    out = []
    view = memoryview(data)
    pos = 0
    for _ in range(count):
        name_len, data_len = _TWO_U32.unpack_from(view, pos + 52)
        n = MSG_HEADER_LEN + 4 * ((name_len + 4) // 4) + \
            4 * ((data_len + 3) // 4) + 4
        out.append(_message_from_entire(view[pos:pos + n]))
        pos += n
    if pos != len(view):
        raise OSError(errno.EPROTO, 'bad batch reply')
    return out


def _decode_one(status, payload):
    """The message of a WAITREAD reply, as a list."""
    return [_message_from_entire(payload)]


def _IOC(d, t, nr, size):
    return ((d << _IOC_DIRSHIFT) | (ord(t) << _IOC_TYPESHIFT) |
            (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT))


def _IO(t, nr):
    return _IOC(_IOC_NONE, t, nr, 0)


def _IOR(t, nr):
    return _IOC(_IOC_READ, t, nr, _PTR_SIZE)


def _IOW(t, nr):
    return _IOC(_IOC_WRITE, t, nr, _PTR_SIZE)


def _IOWR(t, nr):
    return _IOC(_IOC_READ | _IOC_WRITE, t, nr, _PTR_SIZE)


class _ClosedSocket(object):
    """Stands in for the connection of a closed Ksock."""

    def _closed(self, *args, **kwargs):
        raise OSError(errno.EBADF, 'Ksock is closed')

    sendall = recv_into = recvmsg = recvmsg_into = shutdown = _closed

    def close(self):
        pass


_CLOSED = _ClosedSocket()

# How a frame may be sent (Ksock._send; docs/decisions.md D22).
_PLAIN = 0    # any frame that kbusd answers at once
_WAIT = 1     # WAITREAD, READBATCH with wait: sent while no held frame is
              # outstanding, sent again after an early answer
_REQUEST = 2  # REQUEST: other threads' frames wait until it is answered
_FDSIZE = struct.calcsize('i')
_ANCSIZE = socket.CMSG_SPACE(4 * _FDSIZE)


class _Slot(object):
    """A call waiting for its reply frame."""
    __slots__ = ('status', 'payload', 'done', 'error', 'gate')

    def __init__(self):
        self.status = 0
        self.payload = b''
        self.done = False
        self.error = None     # (errno, text) if the connection failed
        self.gate = False

    def check(self):
        if self.error is not None:
            raise _connection_error(*self.error)


class Ksock(object):
    """A connection ("Ksock") to KBUS bus ``which``.

    ``mode`` is ``'r'`` (read only) or ``'rw'`` (read and write). Opening a
    bus that does not exist raises OSError with errno ENOENT. Errors from
    KBUS raise OSError with the errno of the KBUS specification.

    Attributes: ``which`` (the bus number), ``name`` (the path of the bus
    socket), ``mode`` (``'read'`` or ``'read/write'``; None once closed) and
    ``fd`` (the connection to kbusd; None once closed).

    Threads (docs/decisions.md D22): as an open ``/dev/kbusN`` could be, a
    Ksock may be used by several threads at once. Each call gets its own
    reply: one thread may be blocked in ``wait_for_msg()`` while others send,
    bind or read on the same Ksock, and a wait that another thread's call
    answered early waits on until its own timeout; every message is read by
    exactly one thread. While one thread's ``request()`` waits for its
    answer, the other threads' calls wait until it is answered (or its
    timeout passes). ``close()`` may be called from any thread: calls
    blocked meanwhile raise OSError(EBADF). A message written in several
    calls (``write_data``/``write_msg``, then ``send``) is one sequence of
    the Ksock, as with the original: threads that interleave such sequences
    mix their bytes.
    """

    IOC_MAGIC = 'k'
    IOC_RESET = _IO(IOC_MAGIC, 1)
    IOC_BIND = _IOW(IOC_MAGIC, 2)
    IOC_UNBIND = _IOW(IOC_MAGIC, 3)
    IOC_KSOCKID = _IOR(IOC_MAGIC, 4)
    IOC_REPLIER = _IOWR(IOC_MAGIC, 5)
    IOC_NEXTMSG = _IOR(IOC_MAGIC, 6)
    IOC_LENLEFT = _IOR(IOC_MAGIC, 7)
    IOC_SEND = _IOR(IOC_MAGIC, 8)
    IOC_DISCARD = _IO(IOC_MAGIC, 9)
    IOC_LASTSENT = _IOR(IOC_MAGIC, 10)
    IOC_MAXMSGS = _IOWR(IOC_MAGIC, 11)
    IOC_NUMMSGS = _IOR(IOC_MAGIC, 12)
    IOC_UNREPLIEDTO = _IOR(IOC_MAGIC, 13)
    IOC_MSGONLYONCE = _IOWR(IOC_MAGIC, 14)
    IOC_VERBOSE = _IOWR(IOC_MAGIC, 15)
    IOC_NEWDEVICE = _IOR(IOC_MAGIC, 16)
    IOC_REPORTREPLIERBINDS = _IOWR(IOC_MAGIC, 17)
    IOC_MAXMSGSIZE = _IOWR(IOC_MAGIC, 18)

    _BUFSIZE = 65536
    CLOSE_TIMEOUT = 5.0

    def __init__(self, which=0, mode='rw'):
        if mode == 'r':
            bits, mode_name = _MODE_READ, 'read'
        elif mode == 'rw':
            bits, mode_name = _MODE_READ | _MODE_WRITE, 'read/write'
        else:
            raise ValueError("Ksock mode should be 'r' or 'rw', not '%s'"
                             % (mode,))
        self.which = which
        self.name = os.path.join(kbus_dir(which), 'kbus%d' % which)
        self.mode = None
        self.fd = None
        self._sock = _CLOSED
        self._pollfd = -1
        self._id = 0
        self._bus = which
        self._rbuf = bytearray(self._BUFSIZE)   # the reader's
        self._rview = memoryview(self._rbuf)
        self._rpos = 0
        self._rend = 0
        self._send_lock = threading.Lock()  # frames go out whole, in order
        self._mu = threading.Lock()         # the state below
        self._cv = threading.Condition(self._mu)
        self._fifo = deque()                # slots of pending replies
        self._held = None   # last frame sent, if kbusd may hold it unanswered
        self._reading = False
        self._waiting = 0
        self._broken = None                 # (errno, text)
        self._pointy = None          # name + data of a written pointy header
        self._stash = []             # messages popped by a cancelled wait
        self._maybe_pending = False  # a SEND returned EAGAIN

        # docs/reliability.md section 9: never talk to a daemon in a
        # directory that someone else could have put it in.
        directory = os.path.dirname(self.name)
        problem = bus_dir_problem(directory)
        if problem is not None:
            raise PermissionError(errno.EPERM, problem, directory)
        sock = socket.socket(socket.AF_UNIX,
                             socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            try:
                sock.connect(self.name)
            except (ConnectionRefusedError, FileNotFoundError):
                # No socket file: no such bus. A stale socket file with no
                # kbusd behind it (ECONNREFUSED) is reported the same way.
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT),
                              self.name) from None
            try:
                sock.sendall(_hello_frame(bits | _MODE_LAZY_POLLFD))
            except (BrokenPipeError, ConnectionResetError):
                # kbusd refuses a connection over its per-user limit at
                # once: it writes the answer to HELLO (EMFILE) and closes,
                # perhaps before our HELLO went out. Read that answer.
                pass
            status, payload, fds = self._reply_with_fds(sock)
            for fd in fds:
                os.close(fd)    # none is expected
            if status < 0:
                raise _error(status)
            if len(payload) != 8:
                raise OSError(errno.EPROTO, 'HELLO reply of the wrong size')
            self._id, self._bus = _TWO_U32.unpack_from(payload)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._connpoll = select.poll()
        self._connpoll.register(sock, select.POLLIN)
        self.fd = sock
        self.mode = mode_name

    @staticmethod
    def _reply_with_fds(sock):
        """Reads one reply frame with recvmsg(), for the replies that may
        carry descriptors (HELLO, POLLFD): (status, payload, fds). Only
        called when no other reply is buffered."""
        buf = b''
        fds = []
        need = 8
        fdsize = struct.calcsize('i')
        try:
            while len(buf) < need:
                data, ancdata, _flags, _addr = sock.recvmsg(
                    need - len(buf), socket.CMSG_SPACE(4 * fdsize),
                    socket.MSG_CMSG_CLOEXEC)
                for level, kind, cdata in ancdata:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        usable = len(cdata) - len(cdata) % fdsize
                        fds.extend(struct.unpack('%di' % (usable // fdsize),
                                                 cdata[:usable]))
                if not data:
                    raise OSError(errno.ECONNRESET,
                                  'kbusd closed the connection during HELLO')
                buf += data
                if len(buf) >= 8 and need == 8:
                    length = _U32.unpack_from(buf)[0]
                    if length < 4 or length > _MAX_FRAME_LEN:
                        raise OSError(errno.EPROTO,
                                      'bad HELLO reply length %d' % length)
                    need = 4 + length
            status = struct.unpack_from('=i', buf, 4)[0]
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return status, bytes(buf[8:]), fds

    # -- the connection, shared by the threads that use the Ksock: a send
    # lock sends each frame whole and queues its slot in the same order; one
    # waiting thread at a time reads and hands each reply to the oldest slot
    # (a copy); the others wait on the condition (docs/decisions.md D22).

    def _fail_locked(self, err, text):
        if self._broken is None:
            self._broken = (err, text)
        for slot in self._fifo:
            slot.error = self._broken
            slot.done = True
        self._fifo.clear()
        self._held = None
        self._cv.notify_all()

    def _fail(self, exc):
        with self._mu:
            self._fail_locked(exc.errno or errno.EPROTO, exc.strerror or str(exc))

    def _send(self, slot, frame, kind, deadline=None):
        """Queues ``slot`` and sends ``frame``. A _WAIT frame is sent only
        while no held frame is outstanding (else waits for it, at most until
        ``deadline``: False then, nothing sent); every frame waits while
        another thread's REQUEST is held."""
        send_lock = self._send_lock
        mu = self._mu
        send_lock.acquire()
        try:
            mu.acquire()
            try:
                while True:
                    if self._broken is not None:
                        raise _connection_error(*self._broken)
                    held = self._held
                    if held is None or (not held.gate and kind != _WAIT):
                        break
                    # Wait for it without the send lock (its owner may
                    # need it to cancel it).
                    send_lock.release()
                    self._waiting += 1
                    try:
                        if deadline is None:
                            self._cv.wait()
                        else:
                            self._cv.wait(max(0.0, deadline - time.monotonic()))
                    finally:
                        self._waiting -= 1
                        mu.release()
                        send_lock.acquire()
                        mu.acquire()
                    if deadline is not None and time.monotonic() >= deadline:
                        return False
                self._fifo.append(slot)
                if kind == _PLAIN:
                    self._held = None       # any frame answers a held one
                    if self._waiting:
                        self._cv.notify_all()   # waiters may send again
                else:
                    self._held = slot
                    slot.gate = kind == _REQUEST
            finally:
                mu.release()
            try:
                self._sock.sendall(frame)
            except OSError as e:
                self._fail(e)
                raise _connection_error(e.errno or errno.EPROTO,
                                        e.strerror or str(e)) from None
        finally:
            send_lock.release()
        return True

    def _fill(self, deadline):
        """Receives into the buffer (reader only): False if ``deadline``
        passed first. Uses recvmsg, so the POLLFD reply's descriptor is
        kept whichever thread reads it."""
        if deadline is not None:
            left = deadline - time.monotonic()
            if not self._connpoll.poll(max(0, int(math.ceil(left * 1000)))):
                return False
        pos, end = self._rpos, self._rend
        buf = self._rbuf
        need = 8
        if end - pos >= 8:
            need = max(8, 4 + _U32.unpack_from(buf, pos)[0])
        if len(buf) - pos < need or len(buf) - end < 4096:
            have = end - pos
            if need > len(buf):
                new = bytearray(max(need, 2 * len(buf)))
                new[:have] = buf[pos:end]
                self._rbuf = buf = new
                self._rview = memoryview(new)
            else:
                buf[:have] = buf[pos:end]
            pos, end = 0, have
            self._rpos, self._rend = pos, end
        n, ancdata, _flags, _addr = self._sock.recvmsg_into(
            [self._rview[end:]], _ANCSIZE, socket.MSG_CMSG_CLOEXEC)
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(cdata) - len(cdata) % _FDSIZE
                for fd in struct.unpack('%di' % (usable // _FDSIZE), cdata[:usable]):
                    if self._pollfd < 0:
                        self._pollfd = fd
                    else:
                        os.close(fd)    # only one is kept
        if not n:
            raise OSError(errno.ECONNRESET, 'kbusd closed the connection')
        self._rend = end + n
        return True

    def _deliver_locked(self):
        """Hands the whole reply frames in the buffer to the slots."""
        buf = self._rbuf
        pos, end = self._rpos, self._rend
        fifo = self._fifo
        while end - pos >= 8:
            if self._broken is not None:
                pos = end
                break
            length, status = _REP.unpack_from(buf, pos)
            if length < 4:
                self._fail_locked(errno.EPROTO, 'bad reply length %d' % length)
                continue
            if end - pos < 4 + length:
                break
            if not fifo:
                self._fail_locked(errno.EPROTO, 'a reply nobody asked for')
                continue
            slot = fifo.popleft()
            slot.status = status
            slot.payload = bytes(self._rview[pos + 8:pos + 4 + length])
            slot.done = True
            if self._held is slot:
                self._held = None
            pos += 4 + length
        if pos == end:
            pos = end = 0
        self._rpos, self._rend = pos, end

    def _await(self, slot, deadline=None):
        """Waits until ``slot`` has its reply, reading replies if no other
        thread is: False if ``deadline`` passed first."""
        mu = self._mu
        with mu:
            while not slot.done:
                if not self._reading:
                    self._reading = True
                    mu.release()
                    got = False
                    try:
                        got = self._fill(deadline)
                    except OSError as e:
                        mu.acquire()
                        self._reading = False
                        self._fail_locked(e.errno or errno.EPROTO,
                                          e.strerror or str(e))
                        continue
                    except BaseException:
                        mu.acquire()
                        self._reading = False
                        self._cv.notify_all()   # another may read now
                        raise
                    mu.acquire()
                    self._reading = False
                    self._deliver_locked()
                    if self._waiting:
                        self._cv.notify_all()
                    if (not got and not slot.done and deadline is not None
                            and time.monotonic() >= deadline):
                        return False
                    continue
                self._waiting += 1
                try:
                    if deadline is None:
                        self._cv.wait()
                    else:
                        self._cv.wait(max(0.0, deadline - time.monotonic()))
                finally:
                    self._waiting -= 1
                if (not slot.done and deadline is not None
                        and time.monotonic() >= deadline):
                    return False
        return True

    def _call(self, frame):
        """Sends a request frame; returns (status, payload bytes)."""
        slot = _Slot()
        self._send(slot, frame, _PLAIN)
        self._await(slot)
        if slot.error is not None:
            raise _connection_error(*slot.error)
        return slot.status, slot.payload

    def _op(self, frame):
        """Sends a request frame; returns (status, payload). Raises OSError
        for a negative status."""
        slot = _Slot()
        self._send(slot, frame, _PLAIN)
        self._await(slot)
        if slot.error is not None:
            raise _connection_error(*slot.error)
        if slot.status < 0:
            raise _error(slot.status)
        return slot.status, slot.payload

    def _op_u32(self, frame):
        """Sends a request frame; returns the u32 of the reply payload."""
        status, payload = self._op(frame)
        if len(payload) != 4:
            raise OSError(errno.EPROTO, 'reply of the wrong size')
        return _U32.unpack_from(payload)[0]

    def _cancel(self, slot):
        """``slot``'s held frame timed out (or was interrupted): if kbusd may
        still hold it, sends RESET, which answers it at once (docs/protocol.md
        4.4); then waits for its reply."""
        reset = None
        with self._send_lock:
            with self._mu:
                if not slot.done and self._held is slot:
                    reset = _Slot()
                    self._fifo.append(reset)
                    self._held = None
                    if self._waiting:
                        self._cv.notify_all()
            if reset is not None:
                try:
                    self._sock.sendall(_F_RESET)
                except OSError as e:
                    self._fail(e)
        self._await(slot)
        if reset is not None:
            self._await(reset)

    def _cancel_wait(self, slot, decode, keep):
        """Cancels a held wait; returns the messages its reply brought
        (``decode(status, payload)``), or keeps them for the next read."""
        self._cancel(slot)
        slot.check()
        msgs = []
        if slot.status > 0:
            msgs = decode(slot.status, slot.payload)
        if keep:
            self._stash.extend(msgs)
            return []
        return msgs

    def _wait_call(self, frame, deadline, decode):
        """WAITREAD or READBATCH with wait: (status, payload), status 0 if
        ``deadline`` passed first. Answered early by another thread's frame,
        it waits again. An interruption (KeyboardInterrupt...) cancels the
        wait with RESET; messages it brought are kept for the next read."""
        while True:
            slot = _Slot()
            if not self._send(slot, frame, _WAIT, deadline):
                return 0, b''
            try:
                if not self._await(slot, deadline):
                    self._cancel(slot)
            except OSError:
                raise
            except BaseException:
                self._cancel_wait(slot, decode, keep=True)
                raise
            slot.check()
            if slot.status != 0:
                return slot.status, slot.payload
            if deadline is not None and time.monotonic() >= deadline:
                return 0, b''

    def _unstash(self):
        try:
            return self._stash.pop(0)
        except IndexError:
            return None

    # -- operations (spec 11.2)

    def close(self):
        """Close the Ksock (CLOSE, spec 7.2). Closing twice is harmless.

        As the original's close() was, this is synchronous: it half-closes
        the connection and waits (at most CLOSE_TIMEOUT seconds) until kbusd,
        having carried out the whole release sequence, closes its side. So
        once it returns, the Ksock's bindings are gone and its Status
        messages have been sent, as every other Ksock sees them. Calls of
        other threads, pending or blocked, raise OSError(EBADF)."""
        with self._mu:
            sock = self._sock
            self._sock = _CLOSED
            sane = self._broken is None
            self._fail_locked(errno.EBADF, 'Ksock is closed')
        self.mode = None
        self.fd = None
        self._stash = []
        if sock is _CLOSED:
            return
        try:
            if sane:
                sock.shutdown(socket.SHUT_WR)
                deadline = time.monotonic() + self.CLOSE_TIMEOUT
                # kbusd answers what it has, then closes: a thread blocked
                # reading wakes up. Then read to end-of-file ourselves.
                with self._mu:
                    self._waiting += 1      # so that the reader wakes us
                    try:
                        while self._reading:
                            left = deadline - time.monotonic()
                            if left <= 0:
                                break
                            self._cv.wait(left)
                    finally:
                        self._waiting -= 1
                    mine = not self._reading
                    if mine:
                        self._reading = True
                if mine:
                    try:
                        poller = select.poll()
                        poller.register(sock, select.POLLIN)
                        while True:
                            left = deadline - time.monotonic()
                            if left <= 0 or not poller.poll(int(math.ceil(left * 1000))):
                                break
                            if not sock.recv(65536, socket.MSG_DONTWAIT):
                                break           # EOF: kbusd has closed the Ksock
                    finally:
                        with self._mu:
                            self._reading = False
        except (OSError, InterruptedError):
            pass
        finally:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread still in recv
            except OSError:
                pass
            sock.close()
            fd = self._pollfd
            self._pollfd = -1
            if fd >= 0:
                os.close(fd)

    def __del__(self):
        try:
            fd = self._pollfd
        except AttributeError:
            return
        if fd >= 0:
            self._pollfd = -1
            try:
                os.close(fd)
            except OSError:
                pass

    def bind(self, name, replier=False):
        """Bind to messages called ``name``, as a replier if ``replier``,
        else as a listener."""
        if isinstance(name, str):
            name = name.encode('utf-8')
        self._op(_bind_frame(_OP_BIND, 1 if replier else 0, name))

    def unbind(self, name, replier=False):
        """Remove a binding made by ``bind(name, replier)``."""
        if isinstance(name, str):
            name = name.encode('utf-8')
        self._op(_bind_frame(_OP_UNBIND, 1 if replier else 0, name))

    def ksock_id(self):
        """This Ksock's id."""
        return self._op_u32(_F_KSOCKID)

    def next_msg(self):
        """Make the next message current (discarding any current one) and
        return its length, or 0 if there is no message."""
        return self._op_u32(_F_NEXTMSG)

    def len_left(self):
        """The number of bytes of the current message not yet read."""
        return self._op_u32(_F_LENLEFT)

    def send(self):
        """Send the message written so far; returns its MessageId."""
        p = self._pointy
        if p is None:
            frame = _F_SEND
        else:
            self._pointy = None
            frame = _REQ.pack(4 + len(p), _OP_SEND) + p
        status, payload = self._call(frame)
        if status < 0:
            self._maybe_pending = (status == -_EAGAIN)
            raise _error(status)
        self._maybe_pending = False
        return MessageId(*_TWO_U32.unpack_from(payload))

    def discard(self):
        """Throw away the message being written (or a pending send)."""
        self._pointy = None
        self._op(_F_DISCARD)
        self._maybe_pending = False

    def last_msg_id(self):
        """The id of the last message this Ksock sent (MessageId(0, 0) if
        none)."""
        status, payload = self._op(_F_LASTSENT)
        return MessageId(*_TWO_U32.unpack_from(payload))

    def find_replier(self, name):
        """The id of the Ksock bound as replier to exactly ``name``, or
        None."""
        if isinstance(name, str):
            name = name.encode('utf-8')
        status, payload = self._op(_replier_frame(name))
        if status:
            return _U32.unpack_from(payload)[0]
        return None

    def max_messages(self):
        """The maximum number of messages this Ksock can queue."""
        return self._op_u32(_u32_frame(_OP_MAXMSGS, 0))

    def set_max_messages(self, count):
        """Set the queue limit (0 just asks); returns the limit in force."""
        return self._op_u32(_u32_frame(_OP_MAXMSGS, count))

    def num_messages(self):
        """The number of messages waiting to be read."""
        return self._op_u32(_F_NUMMSGS)

    def num_unreplied_to(self):
        """The number of Requests read that still need a Reply from us."""
        return self._op_u32(_F_UNREPLIEDTO)

    def want_messages_once(self, only_once=False, just_ask=False):
        """Receive only one copy of each message (or not); returns the
        previous setting. With ``just_ask`` only returns the setting."""
        value = 0xFFFFFFFF if just_ask else (1 if only_once else 0)
        return self._op_u32(_u32_frame(_OP_MSGONLYONCE, value))

    def monitor(self, on=True, just_ask=False):
        """Make this Ksock a monitor (or an ordinary Ksock again, with
        ``on=False``): it then receives a copy of every message its bus
        sends or makes, Status messages included, in bus order, and takes
        no part in KBUS (bind and write fail with EBUSY). With ``just_ask``
        nothing changes. Returns the number of copies a full queue made it
        miss since the previous call (a kbus extension, docs/decisions.md
        D25). EBADF if it cannot read; EBUSY to ``on`` if it has bindings,
        Requests awaiting replies, replies owed or a send pending."""
        value = 0xFFFFFFFF if just_ask else (1 if on else 0)
        return self._op_u32(_u32_frame(_OP_MONITOR, value))

    def kernel_module_verbose(self, verbose=True, just_ask=False):
        """Turn the bus's verbose flag on/off; returns the previous value."""
        value = 0xFFFFFFFF if just_ask else (1 if verbose else 0)
        return self._op_u32(_u32_frame(_OP_VERBOSE, value))

    def new_device(self):
        """Create a new bus; returns its number."""
        return self._op_u32(_F_NEWDEVICE)

    def report_replier_binds(self, report_events=True, just_ask=False):
        """Turn the reporting of replier (un)binds on/off for the bus;
        returns the previous value."""
        value = 0xFFFFFFFF if just_ask else (1 if report_events else 0)
        return self._op_u32(_u32_frame(_OP_REPORTREPLIERBINDS, value))

    def max_message_size(self):
        """The bus's maximum message size."""
        return self._op_u32(_u32_frame(_OP_MAXMSGSIZE, 0))

    def set_max_message_size(self, count):
        """Set the bus's maximum message size (0 asks for the current
        value, 1 for the absolute maximum); returns the value."""
        return self._op_u32(_u32_frame(_OP_MAXMSGSIZE, count))

    def write_msg(self, message):
        """Write a message, without sending it. The header is written now
        (and checked now); the name and data go with the SEND (the timing
        of the original's "pointy" messages)."""
        data = message._data
        if data and len(data) + len(message._name) > _MAX_PAYLOAD:
            # Too big for one SEND frame (docs/protocol.md 2): write it in
            # the entire form instead, in pieces.
            self.write_data(message.to_bytes())
            return
        hdr = message._pointy_bytes()
        self._pointy = None
        status, payload = self._call(_WRITE_HDR_FRAME + hdr)
        if status < 0:
            raise _error(status)
        self._pointy = message._name + data if data else message._name

    def send_msg(self, message):
        """Write and send a message; returns its MessageId."""
        data = message._data
        if self._maybe_pending or (data and len(data) + len(message._name) >
                                   _MAX_PAYLOAD):
            self.write_msg(message)
            return self.send()
        # SENDMSG: the entire form written and sent in one frame (for a
        # write followed at once by SEND, pointy and entire timing cannot be
        # told apart: the same errors, the same state afterwards).
        self._pointy = None
        h = message._hdr
        if message.msg is h:
            hb = bytes(h)   # with the pointer fields zeroed: entire form
            hb = hb[:_NAME_PTR_OFF] + _NO_POINTERS + hb[_NAME_PTR_OFF + 2 * _PTR_SIZE:]
            name = message._name
            n = len(name)
            if data:
                d = len(data)
                body = (hb, name, _ZEROS[:4 - (n & 3)], data,
                        _ZEROS[:(4 - (d & 3)) & 3], _END_GUARD_BYTES)
                size = MSG_HEADER_LEN + n + (4 - (n & 3)) + d + ((4 - (d & 3)) & 3) + 4
            else:
                body = (hb, name, _ZEROS[:4 - (n & 3)], _END_GUARD_BYTES)
                size = MSG_HEADER_LEN + n + (4 - (n & 3)) + 4
            frame = b''.join((_REQ.pack(4 + size, _OP_SENDMSG),) + body)
        else:
            entire = message.to_bytes()
            frame = _REQ.pack(4 + len(entire), _OP_SENDMSG) + entire
        status, payload = self._call(frame)
        if status < 0:
            self._maybe_pending = (status == -_EAGAIN)
            raise _error(status)
        return MessageId(*_TWO_U32.unpack_from(payload))

    def write_data(self, data):
        """Write raw bytes of a message; returns the number written."""
        self._pointy = None
        data = bytes(data)
        if len(data) <= _MAX_PAYLOAD:
            status, payload = self._op(_REQ.pack(4 + len(data), _OP_WRITE) +
                                       data)
            return status
        # More than one frame can carry: write it in pieces (as writes may
        # be split anywhere), stopping at the first error.
        total = 0
        view = memoryview(data)
        for start in range(0, len(data), _MAX_PAYLOAD):
            piece = view[start:start + _MAX_PAYLOAD]
            status, payload = self._op(_REQ.pack(4 + len(piece), _OP_WRITE) +
                                       piece)
            total += status
        return total

    def read_msg(self, length):
        """Read ``length`` bytes of the current message (as given by
        ``next_msg()``) and return them as a Message, or None if there was
        nothing to read."""
        status, payload = self._op(_u32_frame(_OP_READ, length))
        if not payload:
            return None
        return _message_from_entire(payload)

    def read_next_msg(self):
        """Pop the next message and return it (a Message), or None if there
        is none."""
        if self._stash:
            msg = self._unstash()
            if msg is not None:
                return msg
        status, payload = self._call(_F_NEXTREAD)
        if status <= 0:
            if status < 0:
                raise _error(status)
            return None
        return _message_from_entire(payload)

    def wait_for_msg(self, timeout=None):
        """Wait until a message can be read (forever if ``timeout`` is None,
        else at most ``timeout`` seconds), then read it as
        ``read_next_msg()`` does. Returns None if the timeout expired.

        kbusd does the waiting (WAITREAD, docs/protocol.md 4.4): it answers
        as soon as a message is queued, in one round trip. A timeout, or an
        exception such as KeyboardInterrupt while waiting, cancels the wait
        with RESET; a message that kbusd had popped by then is kept and
        returned by the next ``read_next_msg()`` or ``wait_for_msg()``.
        Another thread's call on this Ksock answers the wait early; it then
        waits again, until its own timeout.
        """
        if self._stash:
            msg = self._unstash()
            if msg is not None:
                return msg
        if timeout is not None and timeout <= 0:
            return self.read_next_msg()
        deadline = None if timeout is None else time.monotonic() + timeout
        status, payload = self._wait_call(_F_WAITREAD, deadline, _decode_one)
        if status <= 0:
            if status < 0:
                raise _error(status)
            return None
        return _message_from_entire(payload)

    # -- one-round-trip and batch calls (docs/protocol.md 4.5-4.6): they
    # change the cost of the generic calls, never their meaning.

    def request(self, message, timeout=None):
        """Send a Request and wait for its answer - the Reply, or the Status
        that replaced it - in one round trip (REQUEST). Only that answer is
        taken from the queue; other messages stay queued, in order. Raises
        OSError(ETIMEDOUT) if ``timeout`` seconds pass first (the answer then
        stays queued), and the errors of ``send_msg`` otherwise. While it
        waits, other threads' calls on this Ksock wait for it to end."""
        if not message.flags & Message.WANT_A_REPLY:
            raise OSError(errno.EINVAL, 'request() sends Requests only')
        deadline = None if timeout is None else time.monotonic() + max(0, timeout)
        slot = _Slot()
        self._send(slot, _frame(_OP_REQUEST, message.to_bytes()), _REQUEST)
        try:
            if not self._await(slot, deadline):
                self._cancel(slot)
        except OSError:
            raise
        except BaseException:
            # Interrupted: end the REQUEST; an answer it brought is kept.
            self._cancel_wait(slot, lambda st, p: [_message_from_entire(
                memoryview(p)[8:])], keep=True)
            raise
        slot.check()
        status, payload = slot.status, slot.payload
        if status < 0:
            raise _error(status)
        if status == 0:
            raise OSError(errno.ETIMEDOUT, 'no answer within the timeout')
        return _message_from_entire(memoryview(payload)[8:])

    def send_msgs(self, messages):
        """Send messages in order, in as few round trips as frames allow
        (SENDBATCH); stops at the first failure. Returns their MessageIds.
        A failure raises OSError whose ``ids`` attribute lists the ids of the
        messages attempted (the last one is the one that failed)."""
        ids = []
        batch = []
        size = 0
        pieces = [m.to_bytes() for m in messages]
        for i, b in enumerate(pieces + [None]):
            if b is None or (batch and size + 4 + len(b) > _MAX_PAYLOAD):
                while batch:
                    status, payload = self._send_batch(batch)
                    count = _U32.unpack_from(payload)[0]
                    for j in range(count):
                        ids.append(MessageId(*_TWO_U32.unpack_from(
                            payload, 4 + 8 * j)))
                    if status < 0:
                        e = _error(status)
                        e.ids = ids
                        raise e
                    if count == 0 or count > len(batch):
                        raise OSError(errno.EPROTO, 'bad SENDBATCH reply')
                    # docs/protocol.md §4.6: kbusd bounds one frame's work
                    # and leaves the rest to be sent again.
                    batch = batch[count:]
                batch = []
                size = 0
            if b is not None:
                batch.append(b)
                size += 4 + len(b)
        return ids

    def _send_batch(self, pieces):
        payload = b''.join(_U32.pack(len(b)) + b for b in pieces)
        status, reply = self._call(_frame(_OP_SENDBATCH, payload))
        if len(reply) < 4:
            raise _error(status) if status < 0 else OSError(errno.EPROTO, 'bad reply')
        return status, reply

    def read_msgs(self, max_count, max_bytes=1 << 20):
        """Pop up to ``max_count`` messages at once (READBATCH), as many
        ``read_next_msg()`` calls would; their total size is at most
        ``max_bytes``, but one is always returned if any is queued. Returns
        a list (empty if the queue is empty)."""
        out = []
        while self._stash and len(out) < max_count:
            msg = self._unstash()
            if msg is None:
                break
            out.append(msg)
        if len(out) == max_count:
            return out
        status, payload = self._op(_frame(_OP_READBATCH, struct.pack(
            '=III', max_count - len(out), max_bytes, 0)))
        out.extend(_split_messages(payload, status))
        return out

    def wait_for_msgs(self, max_count, timeout=None, max_bytes=1 << 20):
        """As ``read_msgs()``, but first waits (forever if ``timeout`` is
        None, else at most ``timeout`` seconds) until a message is queued.
        Returns an empty list on timeout."""
        if self._stash:
            return self.read_msgs(max_count, max_bytes)
        deadline = None if timeout is None else time.monotonic() + max(0, timeout)
        status, payload = self._wait_call(_frame(_OP_READBATCH, struct.pack(
            '=III', max_count, max_bytes, 1)), deadline, _split_messages)
        if status < 0:
            raise _error(status)
        return _split_messages(payload, status)

    def read_data(self, count):
        """Read up to ``count`` bytes of the current message (b'' if there
        is none, or it has all been read)."""
        status, payload = self._op(_u32_frame(_OP_READ, count))
        return payload

    def fileno(self):
        """The descriptor to give to select/poll: readable when a message is
        waiting, writable when a message can be written and sent."""
        if self._sock is _CLOSED:
            raise ValueError('I/O operation on closed Ksock')
        if self._pollfd < 0:
            # Asked for on first use (POLLFD), so that a Ksock nobody
            # polls costs kbusd one descriptor instead of three.
            # The reader keeps the descriptor that comes with the reply.
            status, payload = self._op(_frame(_OP_POLLFD))
            if self._pollfd < 0 or payload:
                raise OSError(errno.EPROTO, 'POLLFD reply carried no poll fd')
        return self._pollfd

    # -- extras

    def _report(self, part_op, whole_frame):
        """A report in parts (docs/protocol.md 4.3: BINDINGSPART,
        STATSPART), each bounded by kbusd, put together; from a kbusd that
        does not know them (ENOTTY), the whole report in one reply."""
        parts = []
        bus, pos = 0, _REPORT_FIRST
        while True:
            try:
                status, payload = self._op(_frame(part_op, _REPORT_PART.pack(
                    bus, pos & 0xFFFFFFFF, pos >> 32, 65536)))
            except OSError as e:
                if e.errno != errno.ENOTTY or parts:
                    raise
                status, payload = self._op(whole_frame)
                return payload.decode('utf-8', 'replace')
            if len(payload) < 12:
                raise OSError(errno.EPROTO, 'report part too short')
            next_bus, lo, hi = _REPORT_NEXT.unpack_from(payload)
            parts.append(bytes(payload[12:]))
            if next_bus == _REPORT_DONE:
                return b''.join(parts).decode('utf-8', 'replace')
            if len(payload) == 12 and (next_bus, lo | hi << 32) == (bus, pos):
                raise OSError(errno.EPROTO, 'report part made no progress')
            bus, pos = next_bus, lo | hi << 32

    def _bindings_report(self):
        """The text of the bindings report (spec 9.1), all buses."""
        return self._report(_OP_BINDINGSPART, _F_BINDINGS)

    def _stats_report(self):
        """The text of the stats report (spec 9.2), all buses."""
        return self._report(_OP_STATSPART, _F_STATS)

    # -- Python protocols

    def __iter__(self):
        return self

    def __next__(self):
        msg = self.read_next_msg()
        if msg is None:
            raise StopIteration
        return msg

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.close()
        return False

    def __str__(self):
        if self.mode is None:
            return 'Ksock device %s (closed)' % (self.which,)
        return 'Ksock device %s, id %u, mode %s' % (self.which, self._id,
                                                   self.mode)

    def __repr__(self):
        if self.mode is None:
            return '<Ksock %s closed>' % (self.name,)
        return '<Ksock %s open for %s>' % (self.name, self.mode)
