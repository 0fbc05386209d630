"""kbus_dev - the Ksock of the original Python module, on the /dev/kbusN device.

Written as the original kbus Python package drove the kernel module: the
device file is opened with open(), the operations are fcntl.ioctl() with
ctypes argument structures, and messages are os.write() and os.read() of
their bytes on the opened file's descriptor. It stands in for the original
module in the preload tests (tests/preload), run under `kbus run`.
"""

import array
import ctypes
import fcntl
import os
import struct

# ---- ioctl numbers (KBUS-SPEC.md §4.5): _IO/_IOR/_IOW/_IOWR('k', n, char *) ----

_IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS = 8, 8, 14
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def _IOC(d, t, nr, size):
    return (d << _IOC_DIRSHIFT) | (ord(t) << _IOC_TYPESHIFT) | \
           (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT)


_PTR = ctypes.sizeof(ctypes.c_char_p)


def _IO(t, nr):
    return _IOC(_IOC_NONE, t, nr, 0)


def _IOW(t, nr):
    return _IOC(_IOC_WRITE, t, nr, _PTR)


def _IOR(t, nr):
    return _IOC(_IOC_READ, t, nr, _PTR)


def _IOWR(t, nr):
    return _IOC(_IOC_READ | _IOC_WRITE, t, nr, _PTR)


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

# ---- message layout (§3) ----

START_GUARD = 0x7375624B
END_GUARD = 0x4B627573
WANT_A_REPLY = 0x1
WANT_YOU_TO_REPLY = 0x2
ALL_OR_WAIT = 0x100
ALL_OR_FAIL = 0x200


class _MessageHeaderStruct(ctypes.Structure):
    _fields_ = [('start_guard', ctypes.c_uint32),
                ('id_network', ctypes.c_uint32),
                ('id_serial', ctypes.c_uint32),
                ('in_reply_to_network', ctypes.c_uint32),
                ('in_reply_to_serial', ctypes.c_uint32),
                ('to', ctypes.c_uint32),
                ('from_', ctypes.c_uint32),
                ('orig_from_network', ctypes.c_uint32),
                ('orig_from_local', ctypes.c_uint32),
                ('final_to_network', ctypes.c_uint32),
                ('final_to_local', ctypes.c_uint32),
                ('extra', ctypes.c_uint32),
                ('flags', ctypes.c_uint32),
                ('name_len', ctypes.c_uint32),
                ('data_len', ctypes.c_uint32),
                ('name', ctypes.c_char_p),
                ('data', ctypes.c_void_p),
                ('end_guard', ctypes.c_uint32)]


HEADER_LEN = ctypes.sizeof(_MessageHeaderStruct)


def padded_name_len(n):
    return 4 * ((n + 1 + 3) // 4)


def padded_data_len(d):
    return 4 * ((d + 3) // 4)


def entire_len(n, d):
    return HEADER_LEN + padded_name_len(n) + padded_data_len(d) + 4


class Message(object):
    """A message in entire form: its bytes, and the header fields."""

    def __init__(self, name, data=b'', flags=0, to=0, in_reply_to=(0, 0)):
        self.name = name.encode() if isinstance(name, str) else name
        self.data = data
        self.flags = flags
        self.to = to
        self.in_reply_to = in_reply_to
        self.id = (0, 0)
        self.from_ = 0

    def to_bytes(self):
        hdr = _MessageHeaderStruct()
        hdr.start_guard = START_GUARD
        hdr.end_guard = END_GUARD
        hdr.flags = self.flags
        hdr.to = self.to
        hdr.in_reply_to_network, hdr.in_reply_to_serial = self.in_reply_to
        hdr.name_len = len(self.name)
        hdr.data_len = len(self.data)
        name = self.name + b'\0' * (padded_name_len(len(self.name)) - len(self.name))
        data = self.data + b'\0' * (padded_data_len(len(self.data)) - len(self.data))
        return bytes(hdr) + name + data + struct.pack('I', END_GUARD)

    @classmethod
    def from_bytes(cls, b):
        hdr = _MessageHeaderStruct.from_buffer_copy(b[:HEADER_LEN])
        if hdr.start_guard != START_GUARD or hdr.end_guard != END_GUARD:
            raise ValueError('not a KBUS message')
        name = b[HEADER_LEN:HEADER_LEN + hdr.name_len]
        at = HEADER_LEN + padded_name_len(hdr.name_len)
        m = cls(name, b[at:at + hdr.data_len], hdr.flags, hdr.to,
                (hdr.in_reply_to_network, hdr.in_reply_to_serial))
        m.id = (hdr.id_network, hdr.id_serial)
        m.from_ = getattr(hdr, 'from_')
        return m


class _BindStruct(ctypes.Structure):
    _fields_ = [('is_replier', ctypes.c_uint32),
                ('len', ctypes.c_uint32),
                ('name', ctypes.c_char_p)]


class _MsgIdStruct(ctypes.Structure):
    _fields_ = [('network_id', ctypes.c_uint32),
                ('serial_num', ctypes.c_uint32)]


class Ksock(object):
    """One open /dev/kbusN (KBUS-SPEC.md §11.2): mode 'r' or 'rw'."""

    def __init__(self, which=0, mode='r'):
        if mode not in ('r', 'rw', 'w'):
            raise ValueError("mode must be 'r' or 'rw', not %r" % mode)
        self.which = which
        self.name = '/dev/kbus%d' % which
        self.mode = mode
        self.fd = open(self.name, {'r': 'rb', 'rw': 'r+b', 'w': 'wb'}[mode], buffering=0)

    def close(self):
        self.fd.close()

    def fileno(self):
        return self.fd.fileno()

    def _u32(self, op, value=0):
        arg = array.array('I', [value])
        fcntl.ioctl(self.fd, op, arg, True)
        return arg[0]

    def reset(self):
        return fcntl.ioctl(self.fd, IOC_RESET, 0)

    def bind(self, name, replier=False):
        name = name.encode() if isinstance(name, str) else name
        arg = _BindStruct(1 if replier else 0, len(name), name)
        return fcntl.ioctl(self.fd, IOC_BIND, arg)

    def unbind(self, name, replier=False):
        name = name.encode() if isinstance(name, str) else name
        arg = _BindStruct(1 if replier else 0, len(name), name)
        return fcntl.ioctl(self.fd, IOC_UNBIND, arg)

    def ksock_id(self):
        return self._u32(IOC_KSOCKID)

    def next_msg(self):
        return self._u32(IOC_NEXTMSG)

    def len_left(self):
        return self._u32(IOC_LENLEFT)

    def find_replier(self, name):
        name = name.encode() if isinstance(name, str) else name
        arg = _BindStruct(0, len(name), name)   # return_id, len, name
        found = fcntl.ioctl(self.fd, IOC_REPLIER, arg)
        return arg.is_replier if found else None

    def send(self):
        arg = _MsgIdStruct()
        fcntl.ioctl(self.fd, IOC_SEND, arg)
        return (arg.network_id, arg.serial_num)

    def discard(self):
        return fcntl.ioctl(self.fd, IOC_DISCARD, 0)

    def last_msg_id(self):
        arg = _MsgIdStruct()
        fcntl.ioctl(self.fd, IOC_LASTSENT, arg)
        return (arg.network_id, arg.serial_num)

    def set_max_messages(self, count):
        return self._u32(IOC_MAXMSGS, count)

    def num_messages(self):
        return self._u32(IOC_NUMMSGS)

    def num_unreplied_to(self):
        return self._u32(IOC_UNREPLIEDTO)

    def want_messages_once(self, only_once=None):
        return self._u32(IOC_MSGONLYONCE, 0xFFFFFFFF if only_once is None else int(only_once))

    def kernel_module_verbose(self, verbose=None):
        return self._u32(IOC_VERBOSE, 0xFFFFFFFF if verbose is None else int(verbose))

    def report_replier_binds(self, report=None):
        return self._u32(IOC_REPORTREPLIERBINDS, 0xFFFFFFFF if report is None else int(report))

    def new_device(self):
        return self._u32(IOC_NEWDEVICE)

    def set_max_message_size(self, count):
        return self._u32(IOC_MAXMSGSIZE, count)

    def write_data(self, data):
        return os.write(self.fd.fileno(), data)

    def read_data(self, count):
        return os.read(self.fd.fileno(), count)

    def write_msg(self, msg):
        self.write_data(msg.to_bytes())

    def send_msg(self, msg):
        self.write_msg(msg)
        return self.send()

    def read_msg(self, length):
        data = b''
        while len(data) < length:
            more = self.read_data(length - len(data))
            if not more:
                raise EOFError('message ended after %d of %d bytes' % (len(data), length))
            data += more
        return Message.from_bytes(data)

    def read_next_msg(self):
        length = self.next_msg()
        if length == 0:
            return None
        return self.read_msg(length)
