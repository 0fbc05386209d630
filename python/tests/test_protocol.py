"""kbusd speaks docs/protocol.md as the Python client expects: raw frames
on a plain socket (HELLO rules, error replies, WAITREAD/RESET)."""

import errno
import os
import select
import socket
import struct

import pytest

import kbus.ksock as kk
from kbus import Ksock, Message, MSG_HEADER_LEN

pytestmark = pytest.mark.usefixtures('kbusd')


def connect(kbusd, bus=0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(kbusd.socket_path(bus))
    return s


def read_reply(s):
    """(status, payload, fds) of one reply frame; None at EOF."""
    buf = b''
    fds = []
    need = 8
    while len(buf) < need:
        data, anc, _, _ = s.recvmsg(need - len(buf), socket.CMSG_SPACE(16))
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(struct.unpack('%di' % (len(cdata) // 4),
                                         cdata[:len(cdata) // 4 * 4]))
        if not data:
            return None
        buf += data
        if len(buf) >= 4 and need == 8:
            need = 4 + struct.unpack_from('=I', buf)[0]
    length, status = struct.unpack_from('=Ii', buf)
    return status, buf[8:], fds


def hello(s, version=1, mode=3, header_len=MSG_HEADER_LEN):
    s.sendall(kk._frame(kk._OP_HELLO, struct.pack('=III', version, mode,
                                                   header_len)))
    return read_reply(s)


def test_hello(kbusd):
    s = connect(kbusd, 1)
    status, payload, fds = hello(s)
    assert status == 0
    assert struct.unpack('=II', payload) == (1, 1)       # ksock 1, bus 1
    assert len(fds) == 1
    poll = socket.socket(fileno=fds[0])
    assert poll.family == socket.AF_UNIX
    # writable (open for writing, nothing pending), not readable (no message)
    r, w, _ = select.select([poll], [poll], [], 0)
    assert (r, w) == ([], [poll])
    poll.close()
    s.close()


def test_lazy_hello_then_pollfd(kbusd):
    """docs/protocol.md §3-§3.1: with mode bit 4 the HELLO reply carries no
    descriptor; POLLFD hands it over on its reply's bytes, also when frames
    before and after it are pipelined."""
    s = connect(kbusd)
    status, payload, fds = hello(s, mode=7)
    assert (status, fds) == (0, [])
    assert struct.unpack('=II', payload) == (1, 0)
    s.sendall(kk._frame(kk._OP_POLLFD, b'x'))          # takes nothing
    assert read_reply(s) == (-errno.EFAULT, b'', [])
    s.sendall(kk._frame(kk._OP_BIND, struct.pack('=II', 0, 6) + b'$.Fred') +
              kk._frame(kk._OP_POLLFD) + kk._frame(kk._OP_KSOCKID))
    assert read_reply(s) == (0, b'', [])
    status, payload, fds = read_reply(s)
    assert (status, payload, len(fds)) == (0, b'', 1)
    assert read_reply(s) == (0, struct.pack('=I', 1), [])
    poll = socket.socket(fileno=fds[0])
    r, w, _ = select.select([poll], [poll], [], 0)
    assert (r, w) == ([], [poll])
    with Ksock(0) as sender:
        sender.send_msg(Message('$.Fred'))
    r, w, _ = select.select([poll], [], [], 5)
    assert r == [poll]                                  # the queue is non-empty
    # Asking again hands over the same poll fd once more.
    s.sendall(kk._frame(kk._OP_POLLFD))
    status, payload, fds = read_reply(s)
    assert (status, len(fds)) == (0, 1)
    again = socket.socket(fileno=fds[0])
    assert select.select([again], [], [], 5)[0] == [again]
    again.close()
    poll.close()
    s.close()


def test_fileno_is_fetched_on_first_use(kbusd):
    with Ksock(0) as k:
        fd = k.fileno()
        assert fd >= 0 and k.fileno() == fd
        assert select.select([k], [k], [], 0) == ([], [k], [])
    with pytest.raises(ValueError):
        k.fileno()


@pytest.mark.parametrize('args,err', [
    (dict(version=2), errno.EPROTO),
    (dict(mode=0), errno.EINVAL),
    (dict(mode=4), errno.EINVAL),
    (dict(mode=8), errno.EINVAL),
    (dict(mode=11), errno.EINVAL),
    (dict(header_len=80), errno.EINVAL),
])
def test_hello_errors(kbusd, args, err):
    s = connect(kbusd)
    status, payload, fds = hello(s, **args)
    assert status == -err
    assert fds == []
    assert read_reply(s) is None          # and the daemon hangs up
    s.close()


def test_hello_72_byte_header(kbusd):
    """A 32-bit client's Ksock: lengths are computed with H = 72."""
    s = connect(kbusd)
    status, payload, fds = hello(s, header_len=72)
    assert status == 0
    for fd in fds:
        os.close(fd)
    s.sendall(kk._bind_frame(kk._OP_BIND, 0, b'$.Fred'))
    assert read_reply(s)[0] == 0
    k = Ksock(0)
    k.send_msg(Message('$.Fred', b'dada'))
    s.sendall(kk._F_NEXTMSG)
    status, payload, _ = read_reply(s)
    assert status == 1 and struct.unpack('=I', payload) == (88,)
    s.close()


def test_frame_before_hello_closes(kbusd):
    s = connect(kbusd)
    s.sendall(kk._F_KSOCKID)
    assert read_reply(s) is None
    s.close()


def test_error_replies(kbusd):
    k = Ksock(0)
    with pytest.raises(OSError) as e:
        k._op(kk._frame(99))
    assert e.value.errno == errno.ENOTTY
    with pytest.raises(OSError) as e:
        k._op(kk._frame(kk._OP_MAXMSGS))                 # payload too short
    assert e.value.errno == errno.EFAULT
    with pytest.raises(OSError) as e:
        k._op(kk._frame(kk._OP_KSOCKID, b'xxxx'))        # payload too long
    assert e.value.errno == errno.EFAULT
    assert k.ksock_id() == 1                              # still usable
    assert k._op(kk._F_RESET)[0] == 0


def test_oversized_frame_disconnects(kbusd):
    s = connect(kbusd)
    assert hello(s)[0] == 0
    s.sendall(struct.pack('=II', (1 << 20) + 1, kk._OP_WRITE))
    assert read_reply(s) is None
    s.close()


def test_waitread_reset(kbusd):
    s = connect(kbusd)
    status, payload, fds = hello(s)
    for fd in fds:
        os.close(fd)
    s.sendall(kk._bind_frame(kk._OP_BIND, 0, b'$.Fred'))
    assert read_reply(s)[0] == 0
    s.sendall(kk._frame(kk._OP_WAITREAD))
    assert select.select([s], [], [], 0)[0] == []        # held
    s.sendall(kk._F_RESET)
    assert read_reply(s) == (0, b'', [])                  # the WAITREAD
    assert read_reply(s) == (0, b'', [])                  # the RESET
    s.sendall(kk._frame(kk._OP_WAITREAD))
    k = Ksock(0)
    i = k.send_msg(Message('$.Fred', b'x'))
    status, payload, _ = read_reply(s)
    assert status == 1
    assert Message.from_bytes(payload).id == i
    s.close()
