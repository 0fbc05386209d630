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
import time

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
_OP_REQUEST = 72
_OP_SENDBATCH = 74
_OP_READBATCH = 75
_OP_POLLFD = 76

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


# Where kbusd.service serves the system's buses.
SYSTEM_KBUS_DIR = '/run/kbus'


def kbus_dir(which=None):
    """The directory holding the bus sockets (docs/protocol.md section 1):
    $KBUS_DIR, else /run/kbus for root, else $XDG_RUNTIME_DIR/kbus, else
    /tmp/kbus-<uid>. Given a bus number ``which``, a user other than root
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
        user = '/tmp/kbus-%d' % os.getuid()
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

    sendall = recv_into = recvmsg = _closed

    def close(self):
        pass


_CLOSED = _ClosedSocket()


class Ksock(object):
    """A connection ("Ksock") to KBUS bus ``which``.

    ``mode`` is ``'r'`` (read only) or ``'rw'`` (read and write). Opening a
    bus that does not exist raises OSError with errno ENOENT. Errors from
    KBUS raise OSError with the errno of the KBUS specification.

    Attributes: ``which`` (the bus number), ``name`` (the path of the bus
    socket), ``mode`` (``'read'`` or ``'read/write'``; None once closed) and
    ``fd`` (the connection to kbusd; None once closed).

    A Ksock is not thread-safe: use each one from one thread at a time.
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
        self._rbuf = bytearray(self._BUFSIZE)
        self._rview = memoryview(self._rbuf)
        self._rpos = 0
        self._rend = 0
        self._pointy = None          # name + data of a written pointy header
        self._stash = []             # messages popped by a cancelled wait
        self._maybe_pending = False  # a SEND returned EAGAIN

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
            sock.sendall(_hello_frame(bits | _MODE_LAZY_POLLFD))
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

    # -- the connection

    def _fill(self, pos, end, need):
        """Receives until the buffer holds ``need`` bytes from ``pos``."""
        buf = self._rbuf
        if len(buf) - pos < need:
            have = end - pos
            if need > len(buf):
                new = bytearray(max(need, 2 * len(buf)))
                new[:have] = buf[pos:end]
                self._rbuf = buf = new
                self._rview = memoryview(new)
            else:
                buf[:have] = buf[pos:end]
            pos, end = 0, have
        view = self._rview
        recv_into = self._sock.recv_into
        try:
            while end - pos < need:
                n = recv_into(view[end:])
                if not n:
                    pos = end = 0
                    raise OSError(errno.ECONNRESET,
                                  'kbusd closed the connection')
                end += n
        finally:
            # keep what arrived if we are interrupted
            self._rpos = pos
            self._rend = end
        return pos, end

    def _reply(self):
        """Reads one reply frame: (status, payload offset in self._rbuf,
        payload length). The payload stays valid until the next read."""
        pos = self._rpos
        end = self._rend
        if end - pos < 8:
            pos, end = self._fill(pos, end, 8)
        length, status = _REP.unpack_from(self._rbuf, pos)
        total = 4 + length
        if end - pos < total:
            if length < 4:
                raise OSError(errno.EPROTO, 'bad reply length %d' % length)
            pos, end = self._fill(pos, end, total)
        off = pos + 8
        pos += total
        if pos == end:
            self._rpos = self._rend = 0
        else:
            self._rpos = pos
            self._rend = end
        return status, off, total - 8

    def _op(self, frame):
        """Sends a request frame; returns (status, payload offset, length).
        Raises OSError for a negative status."""
        self._sock.sendall(frame)
        status, off, n = self._reply()
        if status < 0:
            raise _error(status)
        return status, off, n

    def _op_u32(self, frame):
        """Sends a request frame; returns the u32 of the reply payload."""
        self._sock.sendall(frame)
        status, off, n = self._reply()
        if status < 0:
            raise _error(status)
        return _U32.unpack_from(self._rbuf, off)[0]

    def _bytes(self, off, n):
        return bytes(self._rview[off:off + n])

    # -- operations (spec 11.2)

    def close(self):
        """Close the Ksock (CLOSE, spec 7.2). Closing twice is harmless.

        As the original's close() was, this is synchronous: it half-closes
        the connection and waits (at most CLOSE_TIMEOUT seconds) until kbusd,
        having carried out the whole release sequence, closes its side. So
        once it returns, the Ksock's bindings are gone and its Status
        messages have been sent, as every other Ksock sees them."""
        sock = self._sock
        self._sock = _CLOSED
        self.mode = None
        self.fd = None
        self._stash = []
        fd = self._pollfd
        self._pollfd = -1
        if fd >= 0:
            os.close(fd)
        if sock is _CLOSED:
            return
        try:
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + self.CLOSE_TIMEOUT
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not poller.poll(int(math.ceil(left * 1000))):
                    break
                if not sock.recv(65536, socket.MSG_DONTWAIT):
                    break           # EOF: kbusd has closed the Ksock
        except (OSError, InterruptedError):
            pass
        finally:
            sock.close()

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
        self._sock.sendall(frame)
        status, off, n = self._reply()
        if status < 0:
            self._maybe_pending = (status == -_EAGAIN)
            raise _error(status)
        self._maybe_pending = False
        return MessageId(*_TWO_U32.unpack_from(self._rbuf, off))

    def discard(self):
        """Throw away the message being written (or a pending send)."""
        self._pointy = None
        self._op(_F_DISCARD)
        self._maybe_pending = False

    def last_msg_id(self):
        """The id of the last message this Ksock sent (MessageId(0, 0) if
        none)."""
        status, off, n = self._op(_F_LASTSENT)
        return MessageId(*_TWO_U32.unpack_from(self._rbuf, off))

    def find_replier(self, name):
        """The id of the Ksock bound as replier to exactly ``name``, or
        None."""
        if isinstance(name, str):
            name = name.encode('utf-8')
        status, off, n = self._op(_replier_frame(name))
        if status:
            return _U32.unpack_from(self._rbuf, off)[0]
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
        self._sock.sendall(_WRITE_HDR_FRAME + hdr)
        status, off, n = self._reply()
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
        self._sock.sendall(frame)
        status, off, n = self._reply()
        if status < 0:
            self._maybe_pending = (status == -_EAGAIN)
            raise _error(status)
        return MessageId(*_TWO_U32.unpack_from(self._rbuf, off))

    def write_data(self, data):
        """Write raw bytes of a message; returns the number written."""
        self._pointy = None
        data = bytes(data)
        if len(data) <= _MAX_PAYLOAD:
            status, off, n = self._op(_REQ.pack(4 + len(data), _OP_WRITE) +
                                      data)
            return status
        # More than one frame can carry: write it in pieces (as writes may
        # be split anywhere), stopping at the first error.
        total = 0
        view = memoryview(data)
        for start in range(0, len(data), _MAX_PAYLOAD):
            piece = view[start:start + _MAX_PAYLOAD]
            status, off, n = self._op(_REQ.pack(4 + len(piece), _OP_WRITE) +
                                      piece)
            total += status
        return total

    def read_msg(self, length):
        """Read ``length`` bytes of the current message (as given by
        ``next_msg()``) and return them as a Message, or None if there was
        nothing to read."""
        status, off, n = self._op(_u32_frame(_OP_READ, length))
        if not n:
            return None
        return _message_from_entire(self._rview[off:off + n])

    def read_next_msg(self):
        """Pop the next message and return it (a Message), or None if there
        is none."""
        if self._stash:
            return self._stash.pop(0)
        self._sock.sendall(_F_NEXTREAD)
        status, off, n = self._reply()
        if status <= 0:
            if status < 0:
                raise _error(status)
            return None
        return _message_from_entire(self._rview[off:off + n])

    def wait_for_msg(self, timeout=None):
        """Wait until a message can be read (forever if ``timeout`` is None,
        else at most ``timeout`` seconds), then read it as
        ``read_next_msg()`` does. Returns None if the timeout expired.

        kbusd does the waiting (WAITREAD, docs/protocol.md 4.4): it answers
        as soon as a message is queued, in one round trip. A timeout, or an
        exception such as KeyboardInterrupt while waiting, cancels the wait
        with RESET; a message that kbusd had popped by then is kept and
        returned by the next ``read_next_msg()`` or ``wait_for_msg()``.
        """
        if self._stash:
            return self._stash.pop(0)
        if timeout is not None and timeout <= 0:
            return self.read_next_msg()
        self._sock.sendall(_F_WAITREAD)
        try:
            if timeout is not None and not self._connpoll.poll(
                    int(math.ceil(timeout * 1000))):
                status = None
            else:
                status, off, n = self._reply()
        except OSError:
            raise               # the connection itself failed
        except BaseException:
            self._cancel_wait(keep=True)
            raise
        if status is None:
            return self._cancel_wait()      # timed out
        if status <= 0:
            if status < 0:
                raise _error(status)
            return None
        return _message_from_entire(self._rview[off:off + n])

    def _cancel_wait(self, keep=False):
        """Ends a WAITREAD with RESET. Returns the message it brought (or
        None); with ``keep`` the message is kept for the next read."""
        self._sock.sendall(_F_RESET)
        status, off, n = self._reply()
        msg = None
        if status > 0:
            msg = _message_from_entire(self._rview[off:off + n])
        self._reply()
        if status < 0:
            raise _error(status)
        if keep and msg is not None:
            self._stash.append(msg)
            return None
        return msg

    # -- one-round-trip and batch calls (docs/protocol.md 4.5-4.6): they
    # change the cost of the generic calls, never their meaning.

    def _held(self, frame, timeout, decode):
        """Sends a frame whose reply kbusd may hold (REQUEST, READBATCH with
        wait); returns (status, payload bytes). A timeout or an interruption
        ends the wait with RESET, which answers it at once; if an
        interruption's early answer brought messages, ``decode(status,
        payload)`` gives them and they are kept for the next read."""
        self._sock.sendall(frame)
        try:
            if timeout is None or self._connpoll.poll(
                    max(0, int(math.ceil(timeout * 1000)))):
                status, off, n = self._reply()
                return status, self._bytes(off, n)
        except OSError:
            raise
        except BaseException:
            status, payload = self._end_held()
            if status > 0:
                self._stash.extend(decode(status, payload))
            raise
        return self._end_held()

    def _end_held(self):
        self._sock.sendall(_F_RESET)
        status, off, n = self._reply()
        payload = self._bytes(off, n)
        self._reply()
        return status, payload

    def request(self, message, timeout=None):
        """Send a Request and wait for its answer - the Reply, or the Status
        that replaced it - in one round trip (REQUEST). Only that answer is
        taken from the queue; other messages stay queued, in order. Raises
        OSError(ETIMEDOUT) if ``timeout`` seconds pass first (the answer then
        stays queued), and the errors of ``send_msg`` otherwise."""
        if not message.flags & Message.WANT_A_REPLY:
            raise OSError(errno.EINVAL, 'request() sends Requests only')
        status, payload = self._held(
            _frame(_OP_REQUEST, message.to_bytes()), timeout,
            lambda st, p: [_message_from_entire(memoryview(p)[8:])])
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
                if batch:
                    status, off, n = self._send_batch(batch)
                    count = _U32.unpack_from(self._rbuf, off)[0]
                    for j in range(count):
                        ids.append(MessageId(*_TWO_U32.unpack_from(
                            self._rbuf, off + 4 + 8 * j)))
                    if status < 0:
                        e = _error(status)
                        e.ids = ids
                        raise e
                batch = []
                size = 0
            if b is not None:
                batch.append(b)
                size += 4 + len(b)
        return ids

    def _send_batch(self, pieces):
        payload = b''.join(_U32.pack(len(b)) + b for b in pieces)
        self._sock.sendall(_frame(_OP_SENDBATCH, payload))
        status, off, n = self._reply()
        if n < 4:
            raise _error(status) if status < 0 else OSError(errno.EPROTO, 'bad reply')
        return status, off, n

    def read_msgs(self, max_count, max_bytes=1 << 20):
        """Pop up to ``max_count`` messages at once (READBATCH), as many
        ``read_next_msg()`` calls would; their total size is at most
        ``max_bytes``, but one is always returned if any is queued. Returns
        a list (empty if the queue is empty)."""
        out = []
        while self._stash and len(out) < max_count:
            out.append(self._stash.pop(0))
        if len(out) == max_count:
            return out
        status, off, n = self._op(_frame(_OP_READBATCH, struct.pack(
            '=III', max_count - len(out), max_bytes, 0)))
        out.extend(_split_messages(self._bytes(off, n), status))
        return out

    def wait_for_msgs(self, max_count, timeout=None, max_bytes=1 << 20):
        """As ``read_msgs()``, but first waits (forever if ``timeout`` is
        None, else at most ``timeout`` seconds) until a message is queued.
        Returns an empty list on timeout."""
        if self._stash:
            return self.read_msgs(max_count, max_bytes)
        status, payload = self._held(_frame(_OP_READBATCH, struct.pack(
            '=III', max_count, max_bytes, 1)), timeout, _split_messages)
        if status < 0:
            raise _error(status)
        return _split_messages(payload, status)

    def read_data(self, count):
        """Read up to ``count`` bytes of the current message (b'' if there
        is none, or it has all been read)."""
        status, off, n = self._op(_u32_frame(_OP_READ, count))
        return self._bytes(off, n)

    def fileno(self):
        """The descriptor to give to select/poll: readable when a message is
        waiting, writable when a message can be written and sent."""
        if self._sock is _CLOSED:
            raise ValueError('I/O operation on closed Ksock')
        if self._pollfd < 0:
            # Asked for on first use (POLLFD), so that a Ksock nobody
            # polls costs kbusd one descriptor instead of three.
            if self._rpos != self._rend:
                raise OSError(errno.EPROTO, 'unexpected bytes from kbusd')
            self._sock.sendall(_frame(_OP_POLLFD))
            status, payload, fds = self._reply_with_fds(self._sock)
            if status < 0:
                for fd in fds:
                    os.close(fd)
                raise _error(status)
            if len(fds) != 1 or payload:
                for fd in fds:
                    os.close(fd)
                raise OSError(errno.EPROTO, 'POLLFD reply carried no poll fd')
            self._pollfd = fds[0]
        return self._pollfd

    # -- extras

    def _bindings_report(self):
        """The text of the bindings report (spec 9.1), all buses."""
        status, off, n = self._op(_F_BINDINGS)
        return self._bytes(off, n).decode('utf-8', 'replace')

    def _stats_report(self):
        """The text of the stats report (spec 9.2), all buses."""
        status, off, n = self._op(_F_STATS)
        return self._bytes(off, n).decode('utf-8', 'replace')

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
