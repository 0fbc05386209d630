"""Ksock against a real kbusd: every method of spec 11.2 and its errors."""

import errno
import os
import select
import socket
import struct
import tempfile

import pytest

import kbus
from kbus import (Ksock, Message, Announcement, Request, Reply, Status,
                  MessageId, OrigFrom, reply_to, stateful_request,
                  read_bindings, split_replier_bind_event_data)

pytestmark = pytest.mark.usefixtures('kbusd')

H = kbus.MSG_HEADER_LEN


def check_errno(err, func, *args, **kwargs):
    with pytest.raises(OSError) as e:
        func(*args, **kwargs)
    assert e.value.errno == err, ('expected %s, got %s (%s)'
                                  % (errno.errorcode[err],
                                     errno.errorcode.get(e.value.errno),
                                     e.value))
    return e.value


def readable(k, timeout=0):
    return bool(select.select([k], [], [], timeout)[0])


def writable(k, timeout=0):
    return bool(select.select([], [k], [], timeout)[1])


# ---------------------------------------------------------------- opening

def test_open_and_strings(kbusd):
    k = Ksock()
    assert k.which == 0
    assert k.mode == 'read/write'
    assert k.name == kbusd.socket_path(0)
    assert k.ksock_id() == 1
    assert str(k) == 'Ksock device 0, id 1, mode read/write'
    assert repr(k) == '<Ksock %s open for read/write>' % kbusd.socket_path(0)
    assert k.fd is not None
    k2 = Ksock(0, 'r')
    assert k2.mode == 'read'
    assert k2.ksock_id() == 2
    assert str(k2) == 'Ksock device 0, id 2, mode read'
    assert repr(k2) == '<Ksock %s open for read>' % kbusd.socket_path(0)
    k3 = Ksock(which=2, mode='rw')
    assert k3.ksock_id() == 1          # ids are per bus
    assert str(k3) == 'Ksock device 2, id 1, mode read/write'
    assert k3.name == kbusd.socket_path(2)


def test_bad_mode():
    for mode in ('w', 'x', 'wr', '', None, 'read'):
        with pytest.raises(ValueError) as e:
            Ksock(0, mode)
        assert str(e.value) == "Ksock mode should be 'r' or 'rw', not '%s'" % (mode,)


def test_missing_bus_is_enoent():
    check_errno(errno.ENOENT, Ksock, 3)
    check_errno(errno.ENOENT, Ksock, 255)
    check_errno(errno.ENOENT, Ksock, -1)
    check_errno(errno.ENOENT, Ksock, 7, 'r')


def test_stale_socket_is_enoent(monkeypatch):
    d = tempfile.mkdtemp(prefix='kbuspys-')
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(os.path.join(d, 'kbus0'))       # bound, never listening
    try:
        monkeypatch.setenv('KBUS_DIR', d)
        check_errno(errno.ENOENT, Ksock, 0)
        monkeypatch.setenv('KBUS_DIR', os.path.join(d, 'nonexistent'))
        check_errno(errno.ENOENT, Ksock, 0)
    finally:
        s.close()
        os.unlink(os.path.join(d, 'kbus0'))
        os.rmdir(d)


def test_directory_rule(monkeypatch):
    from kbus.ksock import kbus_dir
    monkeypatch.setenv('KBUS_DIR', '/some/where')
    assert kbus_dir() == '/some/where'
    monkeypatch.delenv('KBUS_DIR')
    monkeypatch.setenv('XDG_RUNTIME_DIR', '/run/user/1000')
    monkeypatch.setattr(os, 'geteuid', lambda: 0)
    assert kbus_dir() == '/run/kbus'
    monkeypatch.setattr(os, 'geteuid', lambda: 1000)
    monkeypatch.setattr(os, 'getuid', lambda: 1000)
    assert kbus_dir() == '/run/user/1000/kbus'
    monkeypatch.delenv('XDG_RUNTIME_DIR')
    assert kbus_dir() == '/tmp/kbus-1000'


def test_ioc_constants():
    assert Ksock.IOC_MAGIC == 'k'
    if H == 88:
        assert Ksock.IOC_RESET == 0x6b01
        assert Ksock.IOC_BIND == 0x40086b02
        assert Ksock.IOC_KSOCKID == 0x80086b04
        assert Ksock.IOC_REPLIER == 0xc0086b05
        assert Ksock.IOC_DISCARD == 0x6b09
        assert Ksock.IOC_MAXMSGSIZE == 0xc0086b12


# ---------------------------------------------------------------- closing

def test_close(kbusd):
    k = Ksock(0)
    assert k.close() is None
    assert k.mode is None and k.fd is None
    assert str(k) == 'Ksock device 0 (closed)'
    assert repr(k) == '<Ksock %s closed>' % kbusd.socket_path(0)
    assert k.close() is None             # twice is harmless
    with pytest.raises(ValueError):
        k.fileno()
    check_errno(errno.EBADF, k.ksock_id)
    check_errno(errno.EBADF, k.bind, '$.Fred')
    check_errno(errno.EBADF, k.send_msg, Message('$.Fred'))
    # the Ksock really is gone: its replier binding went with it
    r = Ksock(0)
    r.bind('$.Fred', True)
    other = Ksock(0)
    assert other.find_replier('$.Fred') == r.ksock_id()
    r.close()
    assert other.find_replier('$.Fred') is None


def test_context_manager(kbusd):
    with Ksock(0) as k:
        assert isinstance(k, Ksock)
        k.bind('$.Fred', True)
    assert k.mode is None
    other = Ksock(0)
    assert other.find_replier('$.Fred') is None
    with pytest.raises(RuntimeError):
        with Ksock(0) as k2:
            raise RuntimeError('not suppressed')
    assert k2.mode is None


def test_subclass_and_hash(kbusd):
    class MyKsock(Ksock):
        def __init__(self, which=0, mode='rw', label='x'):
            super().__init__(which, mode)
            self.label = label

        def hello(self):
            return 'hello from %d' % self.ksock_id()

    k = MyKsock(1, label='mine')
    assert k.label == 'mine'
    assert k.hello() == 'hello from 1'
    assert str(k) == 'Ksock device 1, id 1, mode read/write'
    k2 = Ksock(1)
    d = {k: 'a', k2: 'b'}
    assert d[k] == 'a' and d[k2] == 'b'
    assert len({k, k2, k}) == 2
    assert k != k2 and k == k


# ---------------------------------------------------------------- binding

BAD_NAMES = ['$.Fred.', '$.Fred..Jim', 'Fred', '$.', '$', '$x', '$.Fred*',
             '$.*.Fred', '$.Fred.**', '$..*', '$.Fr_ed', '$.Fr ed',
             '$.Fr-ed', '$.Fr\0ed']


def test_bind_unbind(kbusd):
    k = Ksock(0)
    assert k.bind('$.Fred') is None
    assert k.bind(b'$.Fred.*') is None
    assert k.bind('$.Fred', replier=True) is None
    assert k.bind('$.%', True) is None
    assert k.bind('$.a') is None
    assert k.bind('$.' + 'a' * 998) is None          # 1000 bytes
    assert k.unbind('$.Fred') is None
    assert k.unbind(b'$.Fred.*') is None
    assert k.unbind('$.Fred', replier=True) is None
    assert k.unbind('$.%', True) is None


def test_bind_errors(kbusd):
    k = Ksock(0)
    for name in BAD_NAMES:
        check_errno(errno.EBADMSG, k.bind, name)
        check_errno(errno.EBADMSG, k.bind, name, True)
    check_errno(errno.EBADMSG, k.bind, '')
    check_errno(errno.ENAMETOOLONG, k.bind, '$.' + 'a' * 999)   # 1001 bytes
    check_errno(errno.EBADMSG, k.bind, '$.KBUS.ReplierBindEvent', True)
    k.bind('$.KBUS.ReplierBindEvent')                        # as listener: fine
    k.bind('$.Fred', True)
    check_errno(errno.EADDRINUSE, k.bind, '$.Fred', True)
    other = Ksock(0, 'r')
    check_errno(errno.EADDRINUSE, other.bind, '$.Fred', True)
    other.bind('$.Fred.*', True)          # a different string is fine
    k.bind('$.Fred')                      # listeners may repeat
    k.bind('$.Fred')


def test_unbind_errors(kbusd):
    k = Ksock(0)
    check_errno(errno.EINVAL, k.unbind, '$.Fred')
    k.bind('$.Fred')
    check_errno(errno.EINVAL, k.unbind, '$.Fred', True)
    check_errno(errno.EINVAL, k.unbind, '$.Fred.*')
    check_errno(errno.EBADMSG, k.unbind, '')
    check_errno(errno.EBADMSG, k.unbind, 'Fred')
    check_errno(errno.ENAMETOOLONG, k.unbind, '$.' + 'a' * 999)
    other = Ksock(0)
    check_errno(errno.EINVAL, other.unbind, '$.Fred')
    k.unbind('$.Fred')
    check_errno(errno.EINVAL, k.unbind, '$.Fred')


def test_find_replier(kbusd):
    k = Ksock(0)
    r = Ksock(0)
    assert k.find_replier('$.Fred') is None
    r.bind('$.Fred', True)
    assert k.find_replier('$.Fred') == r.ksock_id()
    assert k.find_replier(b'$.Fred') == r.ksock_id()
    r.bind('$.Jim.*', True)
    assert k.find_replier('$.Jim.Bob') is None        # exact match only
    assert k.find_replier('$.Jim.*') == r.ksock_id()
    assert k.find_replier('Jim') is None              # names not checked
    check_errno(errno.ENAMETOOLONG, k.find_replier, '')
    check_errno(errno.ENAMETOOLONG, k.find_replier, '$.' + 'a' * 999)
    r.unbind('$.Fred', True)
    assert k.find_replier('$.Fred') is None


def test_ksock_id(kbusd):
    ids = [Ksock(0).ksock_id() for _ in range(3)]
    assert ids == [1, 2, 3]
    k = Ksock(0)
    assert k.ksock_id() == k.ksock_id() == 4


# ---------------------------------------------------------------- sending

def test_send_msg_and_read_next_msg(kbusd):
    sender = Ksock(0)
    listener = Ksock(0, 'r')
    listener.bind('$.Fred')
    assert sender.last_msg_id() == MessageId(0, 0)
    i1 = sender.send_msg(Message('$.Fred', 'Ahem'))
    assert type(i1) is MessageId and i1.network_id == 0
    assert sender.last_msg_id() == i1
    i2 = sender.send_msg(Announcement('$.Fred', b'\x00\xff'))
    assert i2 == i1 + 1
    i3 = sender.send_msg(Message('$.Jim'))          # nobody listens: fine
    assert i3 == i2 + 1
    assert listener.num_messages() == 2
    m = listener.read_next_msg()
    assert type(m) is Message
    assert m.equivalent(Message('$.Fred', 'Ahem'))
    assert m.id == i1 and m.from_ == sender.ksock_id()
    assert m.to == 0 and m.flags == 0 and m.in_reply_to is None
    assert m.is_entire()
    m = listener.read_next_msg()
    assert m.data == b'\x00\xff' and m.id == i2
    assert listener.read_next_msg() is None
    assert listener.num_messages() == 0


def test_send_preserves_network_id_and_fields(kbusd):
    sender = Ksock(0)
    listener = Ksock(0)
    listener.bind('$.Fred')
    msg = Message('$.Fred', b'x', id=MessageId(7, 99), orig_from=OrigFrom(1, 2),
                  final_to=OrigFrom(3, 4), flags=0x10000 | Message.SYNTHETIC,
                  from_=1234)
    assert sender.send_msg(msg) == MessageId(7, 99)
    got = listener.read_next_msg()
    assert got.id == MessageId(7, 99)
    assert got.orig_from == OrigFrom(1, 2) and got.final_to == OrigFrom(3, 4)
    assert got.flags == 0x10000                      # SYNTHETIC cleared
    assert got.from_ == sender.ksock_id()            # from_ overwritten


def test_send_errors(kbusd):
    k = Ksock(0)
    check_errno(errno.ENOMSG, k.send)
    # pointy timing: the header is checked by write_msg, the name by send
    k.write_msg(Message('$.Fred.*'))
    check_errno(errno.EBADMSG, k.send)
    check_errno(errno.ENOMSG, k.send)
    check_errno(errno.EBADMSG, k.send_msg, Message('$.Fred.%'))
    check_errno(errno.EBADMSG, k.send_msg, Message('$.Fr_ed', b'x'))
    assert k.last_msg_id() == MessageId(0, 0)
    check_errno(errno.ENAMETOOLONG, k.write_msg, Message('$.' + 'a' * 999))
    check_errno(errno.ENOMSG, k.send)
    check_errno(errno.EINVAL, k.write_msg,
                Message('$.Fred', flags=Message.ALL_OR_WAIT | Message.ALL_OR_FAIL))
    check_errno(errno.EMSGSIZE, k.write_msg, Message('$.Fred', b'x' * 2000))
    check_errno(errno.ENOMSG, k.send)
    # send_msg whose header is refused sends nothing either
    check_errno(errno.EINVAL, k.send_msg,
                Message('$.Fred', flags=Message.ALL_OR_WAIT | Message.ALL_OR_FAIL))
    check_errno(errno.ENOMSG, k.send)
    check_errno(errno.EMSGSIZE, k.send_msg, Message('$.Fred', b'x' * 2000))
    check_errno(errno.ENOMSG, k.send)
    assert k.last_msg_id() == MessageId(0, 0)
    # two messages without a send between them
    k.write_msg(Message('$.Fred'))
    check_errno(errno.EMSGSIZE, k.write_msg, Message('$.Fred'))
    check_errno(errno.ENOMSG, k.send)
    check_errno(errno.EADDRNOTAVAIL, k.send_msg, Request('$.Fred'))
    # the failed Request consumed an id (spec 5.2 step 7)
    assert k.last_msg_id() != MessageId(0, 0)


def test_bad_headers_by_write_data(kbusd):
    k = Ksock(0)
    good = Message('$.Fred', b'dada').to_bytes()
    bad_start = b'XXXX' + good[4:]
    check_errno(errno.EINVAL, k.write_data, bad_start[:H])
    check_errno(errno.ENOMSG, k.send)
    hdr = bytearray(good[:H])
    hdr[H - 8:H - 4] = b'XXXX' if H == 88 else hdr[H - 8:H - 4]
    if H == 88:
        check_errno(errno.EINVAL, k.write_data, bytes(hdr))   # end guard
    zero_name = bytearray(good[:H])
    zero_name[52:56] = b'\0\0\0\0'
    check_errno(errno.EINVAL, k.write_data, bytes(zero_name))
    long_name = bytearray(good[:H])
    long_name[52:56] = struct.pack('=I', 1001)
    check_errno(errno.ENAMETOOLONG, k.write_data, bytes(long_name))
    # entire form: bad final guard, trailing garbage
    check_errno(errno.EINVAL, k.write_data, good[:-4] + b'XXXX')
    check_errno(errno.ENOMSG, k.send)
    check_errno(errno.EMSGSIZE, k.write_data, good + b'x')
    check_errno(errno.ENOMSG, k.send)
    # an entire message with a wildcard name fails at its last name byte
    wild = Message('$.Fred.*').to_bytes()
    assert k.write_data(wild[:H + 7]) == H + 7
    check_errno(errno.EBADMSG, k.write_data, wild[H + 7:H + 8])
    check_errno(errno.ENOMSG, k.send)
    # incomplete message at SEND
    assert k.write_data(good[:H + 3]) == H + 3
    check_errno(errno.EINVAL, k.send)
    check_errno(errno.ENOMSG, k.send)
    # a zero-length write starts an (empty) message (spec 14-19)
    assert k.write_data(b'') == 0
    check_errno(errno.EINVAL, k.send)
    # a pointy header written raw has no name/data for SEND: EFAULT
    assert k.write_data(Message('$.Fred', b'dada')._pointy_bytes()) == H
    check_errno(errno.EFAULT, k.send)


def test_write_data_piecewise(kbusd):
    sender = Ksock(0)
    listener = Ksock(0)
    listener.bind('$.Fred')
    msg = Message('$.Fred', b'1234567', to=0, flags=0x20000)
    data = msg.to_bytes()
    for i in range(len(data)):
        assert sender.write_data(data[i:i + 1]) == 1
    i1 = sender.send()
    pieces = [data[:5], data[5:H], data[H:H + 9], data[H + 9:]]
    for p in pieces:
        assert sender.write_data(p) == len(p)
    i2 = sender.send()
    assert i2 == i1 + 1
    for want in (i1, i2):
        got = listener.read_next_msg()
        assert got.equivalent(msg) and got.id == want and got.flags == 0x20000


def test_write_msg_then_send(kbusd):
    sender = Ksock(0)
    listener = Ksock(0)
    listener.bind('$.Fred')
    assert sender.write_msg(Message('$.Fred', 'one')) is None
    i = sender.send()
    assert listener.read_next_msg().data == b'one'
    # a message read from KBUS can be written again (as a pointy header)
    listener.bind('$.Jim')
    sender.send_msg(Message('$.Jim', b'abc'))
    got = listener.read_next_msg()
    j = sender.send_msg(got)
    again = listener.read_next_msg()
    assert again.equivalent(got) and again.id == j != got.id
    assert j > i


def test_discard(kbusd):
    k = Ksock(0)
    assert k.discard() is None                 # nothing to discard: fine
    k.write_msg(Message('$.Fred'))
    assert k.discard() is None
    check_errno(errno.ENOMSG, k.send)
    k.write_data(Message('$.Fred').to_bytes()[:10])
    k.discard()
    check_errno(errno.ENOMSG, k.send)
    assert k.last_msg_id() == MessageId(0, 0)


def test_read_only_ksock(kbusd):
    r = Ksock(0, 'r')
    check_errno(errno.EBADF, r.write_data, Message('$.Fred').to_bytes())
    check_errno(errno.EBADF, r.write_msg, Message('$.Fred'))
    check_errno(errno.EBADF, r.send_msg, Message('$.Fred'))
    check_errno(errno.ENOMSG, r.send)
    r.bind('$.Fred', True)                     # may bind as replier
    r.bind('$.Fred')
    w = Ksock(0)
    w.send_msg(Message('$.Fred', 'to r'))
    assert r.read_next_msg().data == b'to r'


# ---------------------------------------------------------------- reading

def test_partial_reads(kbusd):
    sender = Ksock(0)
    listener = Ksock(0)
    listener.bind('$.Fred')
    assert listener.next_msg() == 0
    assert listener.len_left() == 0
    assert listener.read_data(10) == b''
    msg = Message('$.Fred', b'dada')
    i = sender.send_msg(msg)
    expected = Message('$.Fred', b'dada', id=i, from_=sender.ksock_id()).to_bytes()
    n = listener.next_msg()
    assert n == len(expected) == msg.total_length()
    assert listener.num_messages() == 0         # popped: no longer queued
    got = b''
    left = n
    for size in (1, 3, 10, 50, 7, 1000):
        assert listener.len_left() == left
        piece = listener.read_data(size)
        assert len(piece) == min(size, left)
        got += piece
        left -= len(piece)
    assert got == expected
    assert listener.len_left() == 0
    assert listener.read_data(10) == b''
    assert listener.next_msg() == 0


def test_next_msg_discards_current(kbusd):
    sender = Ksock(0)
    listener = Ksock(0)
    listener.bind('$.Fred')
    sender.send_msg(Message('$.Fred', b'one'))
    i2 = sender.send_msg(Message('$.Fred', b'two'))
    n = listener.next_msg()
    listener.read_data(5)
    assert listener.next_msg() == n             # the first one is gone
    m = listener.read_msg(n)
    assert m.id == i2 and m.data == b'two'
    assert type(m) is Message
    assert listener.read_msg(n) is None         # nothing current
    assert listener.read_next_msg() is None


def test_read_msg_in_parts(kbusd):
    sender = Ksock(0)
    listener = Ksock(0)
    listener.bind('$.Fred')
    sender.send_msg(Message('$.Fred', b'x' * 500))
    sender.set_max_message_size(409600)
    big = b''.join(bytes([i % 256]) for i in range(300000))
    i = sender.send_msg(Message('$.Fred', big))
    n = listener.next_msg()
    first = listener.read_msg(n)
    assert first.data == b'x' * 500
    m = listener.read_next_msg()
    assert m.data == big and m.id == i
    assert m.total_length() == kbus.calc_entire_message_len(6, len(big))


@pytest.mark.kbusd_args('--abs-max-msg-size', '921600')
def test_big_messages(kbusd):
    sender = Ksock(0)
    listener = Ksock(0)
    listener.bind('$.Big')
    assert sender.set_max_message_size(1) == 921600
    assert sender.set_max_message_size(921600) == 921600
    big = bytes(range(256)) * 3500                 # 896 000 bytes
    i = sender.send_msg(Message('$.Big', big))
    got = listener.read_next_msg()
    assert got.id == i and got.data == big
    whole = Message('$.Big', big).to_bytes()
    assert sender.write_data(whole) == len(whole)
    j = sender.send()
    assert listener.wait_for_msg(10).data == big and j == i + 1
    # more than one request frame can carry (1 MiB): written in pieces,
    # refused by the size check of the header, and the connection lives on
    huge = Message('$.Big', big * 3).to_bytes()
    check_errno(errno.EMSGSIZE, sender.write_data, huge)
    check_errno(errno.EMSGSIZE, sender.send_msg, Message('$.Big', big * 3))
    check_errno(errno.ENOMSG, sender.send)
    check_errno(errno.ENAMETOOLONG, sender.bind, '$.' + 'a' * (1 << 20))
    check_errno(errno.ENAMETOOLONG, sender.find_replier, '$.' + 'a' * (1 << 20))
    assert sender.ksock_id() == 1


def test_wait_for_msg(kbusd):
    sender = Ksock(0)
    listener = Ksock(0)
    listener.bind('$.Fred')
    assert listener.wait_for_msg(0) is None
    assert listener.wait_for_msg(0.01) is None
    sender.send_msg(Message('$.Fred', b'1'))
    assert listener.wait_for_msg().data == b'1'
    sender.send_msg(Message('$.Fred', b'2'))
    assert listener.wait_for_msg(5).data == b'2'
    assert listener.wait_for_msg(timeout=0) is None


def test_wait_for_msg_from_another_thread(kbusd):
    import threading
    listener = Ksock(0)
    listener.bind('$.Fred')
    sender = Ksock(0)

    t = threading.Thread(target=sender.send_msg,
                         args=(Message('$.Fred', b'later'),))
    t.start()
    m = listener.wait_for_msg(30)
    t.join(30)
    assert m is not None and m.data == b'later'


def test_wait_for_msg_timeout_leaves_ksock_usable(kbusd):
    sender = Ksock(0)
    listener = Ksock(0)
    listener.bind('$.Fred')
    for _ in range(3):
        assert listener.wait_for_msg(0.01) is None
        assert listener.ksock_id() == 2
    i = sender.send_msg(Message('$.Fred', b'x'))
    assert listener.wait_for_msg(0.01).id == i
    assert listener.num_messages() == 0


class Interrupted(Exception):
    pass


def test_wait_for_msg_interrupted(kbusd):
    import signal

    def handler(signum, frame):
        raise Interrupted()

    sender = Ksock(0)
    listener = Ksock(0)
    listener.bind('$.Fred')
    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(Interrupted):
            listener.wait_for_msg()        # like CTRL-C in the talk
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert listener.num_messages() == 0
    assert listener.ksock_id() == 2
    i = sender.send_msg(Message('$.Fred', b'after'))
    assert listener.wait_for_msg().id == i
    assert listener.read_next_msg() is None


def test_cancelled_wait_keeps_its_message(kbusd):
    import kbus.ksock as kk
    sender = Ksock(0)
    listener = Ksock(0)
    listener.bind('$.Fred')
    i1 = sender.send_msg(Message('$.Fred', b'1'))
    i2 = sender.send_msg(Message('$.Fred', b'2'))
    # a WAITREAD that kbusd answered with a message just as it was cancelled
    slot = kk._Slot()
    assert listener._send(slot, kk._F_WAITREAD, kk._WAIT)
    assert listener._cancel_wait(slot, kk._decode_one, keep=True) == []
    assert listener.num_messages() == 1
    assert listener.read_next_msg().id == i1      # the kept one first
    assert listener.wait_for_msg(0).id == i2
    assert listener.read_next_msg() is None


def test_iteration(kbusd):
    sender = Ksock(0)
    listener = Ksock(0)
    listener.bind('$.Fred')
    ids = [sender.send_msg(Message('$.Fred', str(i))) for i in range(3)]
    got = list(listener)
    assert [m.id for m in got] == ids
    assert [m.data for m in got] == [b'0', b'1', b'2']
    assert list(listener) == []
    i4 = sender.send_msg(Message('$.Fred', 'again'))
    assert [m.id for m in listener] == [i4]
    assert iter(listener) is listener


def test_urgent(kbusd):
    sender = Ksock(0)
    listener = Ksock(0)
    listener.bind('$.Fred')
    sender.send_msg(Message('$.Fred', 'a'))
    m = Message('$.Fred', 'b')
    m.set_urgent()
    sender.send_msg(m)
    m = Message('$.Fred', 'c', flags=Message.URGENT)
    sender.send_msg(m)
    assert [x.data for x in listener] == [b'c', b'b', b'a']


# ---------------------------------------------------------------- requests

def test_request_reply(kbusd):
    requester = Ksock(0)
    replier = Ksock(0)
    listener = Ksock(0)
    replier.bind('$.Ask', True)
    listener.bind('$.Ask')
    rid = requester.send_msg(Request('$.Ask', 'question'))
    assert requester.num_messages() == 0
    assert replier.num_unreplied_to() == 0
    req = replier.read_next_msg()
    assert req.id == rid and req.from_ == requester.ksock_id()
    assert req.flags == Message.WANT_A_REPLY | Message.WANT_YOU_TO_REPLY
    assert req.wants_us_to_reply()
    assert replier.num_unreplied_to() == 1
    lcopy = listener.read_next_msg()
    assert lcopy.flags == Message.WANT_A_REPLY and lcopy.id == rid
    with pytest.raises(ValueError):
        reply_to(lcopy)
    rep = reply_to(req, 'answer')
    pid = replier.send_msg(rep)
    assert replier.num_unreplied_to() == 0
    got = requester.read_next_msg()
    assert got.in_reply_to == rid and got.id == pid
    assert got.from_ == replier.ksock_id() and got.to == requester.ksock_id()
    assert got.data == b'answer' and got.is_reply()
    assert type(got.cast()) is Reply
    lrep = listener.read_next_msg()
    assert lrep.id == pid and lrep.is_reply()
    # answering again: no longer awaited
    check_errno(errno.ECONNREFUSED, replier.send_msg, rep)


def test_reply_errors(kbusd):
    requester = Ksock(0)
    replier = Ksock(0)
    replier.bind('$.Ask', True)
    requester.send_msg(Request('$.Ask'))
    req = replier.read_next_msg()
    bad = Reply('$.Ask', to=req.from_, in_reply_to=req.id + 1000)
    check_errno(errno.ECONNREFUSED, replier.send_msg, bad)
    requester.close()
    check_errno(errno.EADDRNOTAVAIL, replier.send_msg, reply_to(req))


def test_stateful_request_epipe(kbusd):
    requester = Ksock(0)
    g = Ksock(0)
    g.bind('$.Toss', True)
    sreq = Request('$.Toss', 'Head', to=g.ksock_id())
    requester.send_msg(sreq)
    assert g.read_next_msg().is_stateful_request()
    g.close()
    f = Ksock(0)
    check_errno(errno.EADDRNOTAVAIL, requester.send_msg, sreq)
    f.bind('$.Toss', True)
    check_errno(errno.EPIPE, requester.send_msg, sreq)
    assert stateful_request(sreq, '$.Toss').to == sreq.to


def test_status_gone_away_ignored_unbound(kbusd):
    requester = Ksock(0)
    replier = Ksock(0)
    replier.bind('$.Ask', True)
    r1 = requester.send_msg(Request('$.Ask', '1'))
    r2 = requester.send_msg(Request('$.Ask', '2'))
    assert replier.read_next_msg().id == r1      # popped, never answered
    rid = replier.ksock_id()
    replier.close()
    gone = requester.read_next_msg()
    ignored = requester.read_next_msg()
    assert requester.read_next_msg() is None
    for m, name, irt in ((gone, '$.KBUS.Replier.GoneAway', r2),
                         (ignored, '$.KBUS.Replier.Ignored', r1)):
        assert m.name == name
        assert m.in_reply_to == irt
        assert m.from_ == rid and m.to == requester.ksock_id()
        assert m.flags == Message.SYNTHETIC and m.is_synthetic()
        assert m.id.network_id == 0 and m.id.serial_num > r2.serial_num
        assert str(m) == ("<Status '%s', id=[0:%d], to=%d, from=%d, "
                          "in_reply_to=[0:%d], flags=0x4 (SYN)>"
                          % (name, m.id.serial_num, requester.ksock_id(), rid,
                             irt.serial_num))
        s = m.cast()
        assert type(s) is Status and s == m
    replier = Ksock(0)
    replier.bind('$.Ask', True)
    r3 = requester.send_msg(Request('$.Ask', '3'))
    replier.unbind('$.Ask', True)
    unbound = requester.read_next_msg()
    assert unbound.name == '$.KBUS.Replier.Unbound' and unbound.in_reply_to == r3


# ---------------------------------------------------------------- limits

def test_max_messages(kbusd):
    sender = Ksock(0)
    listener = Ksock(0)
    listener.bind('$.Fred')
    assert listener.max_messages() == 100
    assert listener.set_max_messages(2) == 2
    assert listener.set_max_messages(0) == 2
    assert listener.max_messages() == 2
    for i in range(3):
        sender.send_msg(Message('$.Fred', str(i)))  # the third is dropped
    assert listener.num_messages() == 2
    check_errno(errno.EBUSY, sender.send_msg,
                Message('$.Fred', flags=Message.ALL_OR_FAIL))
    assert [m.data for m in listener] == [b'0', b'1']


def test_enolck(kbusd):
    requester = Ksock(0)
    replier = Ksock(0)
    replier.bind('$.Ask', True)
    requester.set_max_messages(1)
    requester.send_msg(Request('$.Ask'))
    before = requester.last_msg_id()
    check_errno(errno.ENOLCK, requester.send_msg, Request('$.Ask'))
    assert requester.last_msg_id() == before


def test_all_or_wait_and_poll(kbusd):
    sender = Ksock(0)
    listener = Ksock(0)
    listener.bind('$.Fred')
    listener.set_max_messages(1)
    assert writable(sender) and not readable(sender)
    sender.send_msg(Message('$.Fred', 'first'))
    assert readable(listener)
    wait = Message('$.Fred', 'second', flags=Message.ALL_OR_WAIT)
    check_errno(errno.EAGAIN, sender.send_msg, wait)
    pending = sender.last_msg_id()
    assert not writable(sender)
    check_errno(errno.EALREADY, sender.write_data, b'x')
    check_errno(errno.EALREADY, sender.send_msg, Message('$.Fred', 'third'))
    assert listener.read_next_msg().data == b'first'
    # kbusd retries the pending send as the queue frees up
    assert writable(sender, 10)
    got = listener.read_next_msg()
    assert got.data == b'second' and got.id == pending
    assert not readable(listener)
    # a pending send can be discarded
    sender.send_msg(Message('$.Fred', 'fourth'))
    check_errno(errno.EAGAIN, sender.send_msg, wait)
    assert not writable(sender)
    sender.discard()
    assert writable(sender)
    assert listener.read_next_msg().data == b'fourth'
    assert listener.read_next_msg() is None
    i = sender.send_msg(Message('$.Fred', 'fifth'))
    assert listener.read_next_msg().id == i


def test_poll_readable_writable(kbusd):
    rw = Ksock(0)
    ro = Ksock(0, 'r')
    ro.bind('$.Fred')
    assert isinstance(rw.fileno(), int) and rw.fileno() != rw.fd.fileno()
    assert writable(rw)
    assert not writable(ro)
    assert not readable(ro)
    rw.send_msg(Message('$.Fred'))
    assert readable(ro, 10)
    assert not writable(ro)
    p = select.poll()
    p.register(ro, select.POLLIN | select.POLLOUT)
    events = dict(p.poll(0))
    assert events.get(ro.fileno(), 0) & select.POLLIN
    assert not events.get(ro.fileno(), 0) & select.POLLOUT
    ro.next_msg()                  # the current message does not count
    assert not readable(ro)
    assert ro.read_next_msg() is None


# ---------------------------------------------------------------- bus flags

def test_want_messages_once(kbusd):
    sender = Ksock(0)
    k = Ksock(0)
    assert k.want_messages_once(just_ask=True) == 0
    k.bind('$.Fred')
    k.bind('$.*')
    sender.send_msg(Message('$.Fred'))
    assert k.num_messages() == 2
    assert k.want_messages_once(True) == 0
    assert k.want_messages_once(just_ask=True) == 1
    assert k.want_messages_once(only_once=True) == 1
    sender.send_msg(Message('$.Fred'))
    assert k.num_messages() == 3
    assert k.want_messages_once() == 1           # default: off
    assert k.want_messages_once(just_ask=True) == 0


def test_monitor_sees_all_traffic_and_status(kbusd):
    """docs/decisions.md D25: a monitor gets every message of the bus, the
    Status messages that only the requester gets too (KBUS-SPEC.md §6.2),
    in bus order, and takes no part in KBUS."""
    mon = Ksock(0, 'r')
    assert mon.monitor() == 0
    replier, requester = Ksock(0), Ksock(0)
    replier.bind('$.Fred', True)
    requester.send_msg(Announcement('$.Nobody', 'hi'))
    req_id = requester.send_msg(Request('$.Fred', 'q'))
    replier.close()                              # GoneAway (§7.2-3)
    names = []
    while len(names) < 3:
        m = mon.wait_for_msg(10)
        assert m is not None, names
        names.append(m.name)
        last = m
    assert names == ['$.Nobody', '$.Fred', '$.KBUS.Replier.GoneAway']
    assert last.in_reply_to == req_id
    assert last.to == requester.ksock_id()
    check_errno(errno.EBUSY, mon.bind, '$.Jim')
    bound = Ksock(0)
    bound.bind('$.Jim')
    check_errno(errno.EBUSY, bound.monitor)
    assert mon.monitor(just_ask=True) == 0
    assert mon.monitor(False) == 0
    mon.bind('$.Jim')                            # ordinary again


def test_kernel_module_verbose(kbusd):
    k = Ksock(0)
    assert k.kernel_module_verbose(just_ask=True) == 0
    assert k.kernel_module_verbose() == 0         # turns it on
    assert k.kernel_module_verbose(just_ask=True) == 1
    assert Ksock(0).kernel_module_verbose(False) == 1   # per bus
    assert k.kernel_module_verbose(verbose=False, just_ask=True) == 0
    assert Ksock(1).kernel_module_verbose(just_ask=True) == 0


def test_new_device(kbusd):
    k = Ksock(0)
    check_errno(errno.ENOENT, Ksock, 3)
    assert k.new_device() == 3
    k3 = Ksock(3)
    assert str(k3) == 'Ksock device 3, id 1, mode read/write'
    assert k.new_device() == 4
    assert Ksock(4, 'r').ksock_id() == 1


def test_new_device_from_a_new_bus(kbusd):
    k3 = Ksock(Ksock(0).new_device())
    assert k3.which == 3
    assert k3.new_device() == 4
    assert Ksock(4, 'r').ksock_id() == 1
    assert k3.ksock_id() == 1


def test_report_replier_binds(kbusd):
    k = Ksock(0)
    watcher = Ksock(0)
    replier = Ksock(0)
    replier.bind('$.Early', True)
    assert k.report_replier_binds(just_ask=True) == 0
    watcher.bind('$.KBUS.ReplierBindEvent')
    assert k.report_replier_binds() == 0
    # the caller is told about the existing replier bindings
    ev = k.read_next_msg()
    assert ev.name == '$.KBUS.ReplierBindEvent'
    assert split_replier_bind_event_data(ev.data) == (1, replier.ksock_id(), '$.Early')
    assert k.read_next_msg() is None
    assert watcher.read_next_msg() is None
    assert k.report_replier_binds(just_ask=True) == 1
    replier.bind('$.Fred', True)
    ev = watcher.read_next_msg()
    assert ev.flags == 0x204 and ev.from_ == 0 and ev.to == 0
    assert str(ev) == ("<ReplierBindEvent id=[0:%d], flags=0x204 (SYN,aFL), "
                       "[Bind '$.Fred' for %d]>" % (ev.id.serial_num,
                                                    replier.ksock_id()))
    replier.unbind('$.Fred', True)
    ev = watcher.read_next_msg()
    assert split_replier_bind_event_data(ev.data) == (0, replier.ksock_id(), '$.Fred')
    replier.bind('$.Jim')                  # listeners make no events
    assert watcher.read_next_msg() is None
    assert k.report_replier_binds(False) == 1
    assert k.report_replier_binds(report_events=False, just_ask=True) == 0


def test_max_message_size(kbusd):
    k = Ksock(0)
    assert k.max_message_size() == 1024
    assert k.set_max_message_size(0) == 1024
    assert k.set_max_message_size(1) == 409600
    check_errno(errno.EINVAL, k.set_max_message_size, 99)
    check_errno(errno.EINVAL, k.set_max_message_size, 409601)
    big = Message('$.Fred', b'x' * 1500)
    check_errno(errno.EMSGSIZE, k.send_msg, big)
    assert k.set_max_message_size(2048) == 2048
    assert k.max_message_size() == 2048
    assert Ksock(1).max_message_size() == 1024          # per bus
    listener = Ksock(0)
    listener.bind('$.Fred')
    k.send_msg(big)
    assert listener.read_next_msg() == Message.from_bytes(
        Message('$.Fred', b'x' * 1500, id=k.last_msg_id(),
                from_=k.ksock_id()).to_bytes())
    assert k.set_max_message_size(100) == 100
    check_errno(errno.EMSGSIZE, k.write_msg, Message('$.Fred', b'x' * 4))


# ---------------------------------------------------------------- bindings

def test_read_bindings(kbusd):
    a = Ksock(0)
    b = Ksock(0)
    a.bind('$.Fred')
    b.bind('$.Fred', True)
    a.bind('$.Jim.*', True)
    c = Ksock(1)
    c.bind('$.Other')
    got = read_bindings({a.ksock_id(): 'A'})
    # as in the original, ids of every bus are looked up in the one dict
    assert got == [('A', True, '$.Jim.*'), (b.ksock_id(), True, '$.Fred'),
                   ('A', False, '$.Fred'), ('A', False, '$.Other')]
    assert c.ksock_id() == a.ksock_id() == 1
    assert read_bindings({}, ksock=a) == [
        (1, True, '$.Jim.*'), (2, True, '$.Fred'), (1, False, '$.Fred'),
        (1, False, '$.Other')]
    assert read_bindings({}, bus=2) == read_bindings({}, ksock=a)
    text = a._bindings_report()
    line = [l for l in text.splitlines() if l.endswith('$.Jim.*')][0]
    assert line.split()[:2] == ['0:', '1'] and int(line.split()[2]) == os.getpid()
