"""The byte vectors of tests/vectors/protocol.json, encoded and decoded by
the Python client (no kbusd: frames are checked against a fake daemon that
speaks exactly the vectors)."""

import ctypes
import errno
import json
import os
import shutil
import socket
import struct
import tempfile
import threading

import pytest

import kbus
import kbus.ksock as kk
import kbus.messages as km
from kbus import Message, MessageId, OrigFrom, Ksock
from conftest import VECTORS

with open(VECTORS) as _f:
    _DOC = json.load(_f)
V = {v['name']: bytes.fromhex(v['hex']) for v in _DOC['vectors']}
META = {v['name']: v for v in _DOC['vectors']}

H = km.MSG_HEADER_LEN


def test_vectors_are_little_endian_and_so_are_we():
    assert _DOC['byte_order'] == 'little-endian'
    assert struct.pack('=I', 1) == b'\x01\x00\x00\x00'


# The messages of the entire_* vectors, as built through the Python API.
def _fred_nodata():
    return Message('$.Fred')


def _fred_dada():
    return Message('$.Fred', b'dada')


def _fred_7():
    return Message('$.Fred', '1234567')


def _request():
    return Message('$.Actor.Ask.Guildenstern', 'Were you speaking to me?',
                   id=MessageId(0, 342), from_=113, flags=3)


def _reply():
    return Message('$.Actor.Ask.Guildenstern', 'Yes, yes I was',
                   id=MessageId(0, 343), in_reply_to=MessageId(0, 342),
                   to=113, from_=115, orig_from=OrigFrom(7, 9),
                   final_to=OrigFrom(8, 10))


ENTIRE = {'entire_fred_nodata': _fred_nodata, 'entire_fred_dada': _fred_dada,
          'entire_fred_7': _fred_7, 'entire_request': _request,
          'entire_reply': _reply}


@pytest.mark.parametrize('base', sorted(ENTIRE))
def test_entire_native_encode_decode(base):
    name = '%s_h%d' % (base, H)
    vec = V[name]
    msg = ENTIRE[base]()
    assert msg.to_bytes() == vec
    assert msg.total_length() == len(vec)
    if 'entire_len' in META[name]:
        assert META[name]['entire_len'] == len(vec)
    got = Message.from_bytes(vec)
    assert got == msg
    assert got.extract() == msg.extract()
    assert got.to_bytes() == vec
    assert km._struct_to_bytes(got.msg) == vec


@pytest.mark.parametrize('header_len', [88, 72])
@pytest.mark.parametrize('base', sorted(ENTIRE))
def test_entire_both_abis(base, header_len):
    """The ABI-neutral codec (header 88 or 72) against both sets of vectors."""
    vec = V['%s_h%d' % (base, header_len)]
    msg = ENTIRE[base]()
    words = struct.unpack_from('=15I', km._struct_to_bytes(msg.msg))
    data = msg.data or b''
    assert km._encode_entire_abi(header_len, words, msg._name, data) == vec
    (got_words, name_ptr, data_ptr, end_guard, name, got_data,
     final) = km._decode_entire_abi(header_len, vec)
    assert got_words == words
    assert (name_ptr, data_ptr) == (0, 0)
    assert end_guard == final == Message.END_GUARD
    assert (name, got_data) == (msg._name, data)


def test_entire_lengths_of_both_abis():
    for name, meta in META.items():
        if 'entire_len' in meta:
            assert len(V[name]) == meta['entire_len'], name
            assert meta['entire_len'] == (meta['header_len'] - H +
                                          km.calc_entire_message_len(6, len(
                                              {'nodata': b'', 'dada': b'dada',
                                               '7': b'1234567'}[name.split('_')[2]])))


@pytest.mark.parametrize('header_len', [88, 72])
def test_pointy_header(header_len):
    vec = V['pointy_header_h%d' % header_len]
    assert len(vec) == header_len
    fields = (Message.START_GUARD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6, 4)
    got = km._ABI_HEADERS[header_len].unpack(vec)
    assert got == fields + (1, 2, Message.END_GUARD)
    assert km._ABI_HEADERS[header_len].pack(*fields, 1, 2, Message.END_GUARD) == vec
    if header_len == H:
        # The header Ksock.write_msg() writes for Message('$.Fred', 'dada') is
        # this vector but for the (non-zero) pointer values.
        hdr = Message('$.Fred', 'dada')._pointy_bytes()
        ptr = ctypes.sizeof(ctypes.c_void_p)
        off = km._MessageHeaderStruct.name.offset
        assert hdr[:off] == vec[:off]
        assert hdr[off + 2 * ptr:] == vec[off + 2 * ptr:]
        assert hdr[off:off + ptr] != bytes(ptr)
        assert hdr[off + ptr:off + 2 * ptr] != bytes(ptr)
        h = km._struct_from_bytes(km._MessageHeaderStruct, vec)
        assert (h.name_len, h.data_len) == (6, 4)
        assert ctypes.cast(h.data, ctypes.c_void_p).value == 2   # the vector's pointer value
        # an entire message read from KBUS is written as a pointy header too
        e = Message.from_bytes(V['entire_fred_dada_h%d' % H])
        hdr = e._pointy_bytes()
        assert hdr[:off] == vec[:off]
        assert hdr[off + 2 * ptr:] == vec[off + 2 * ptr:]
        assert hdr[off:off + ptr] != bytes(ptr)
        assert hdr[off + ptr:off + 2 * ptr] != bytes(ptr)


def test_replier_bind_event_data():
    assert kbus.split_replier_bind_event_data(V['replier_bind_event_data']) == \
        (1, 3, '$.Fred')
    hdr = km._ReplierBindEventHeader(1, 3, 6)
    assert km._struct_to_bytes(hdr) + b'$.Fred\0\0' == V['replier_bind_event_data']


def test_request_frame_encoders():
    assert kk._hello_frame(3 | kk._MODE_LAZY_POLLFD, 88) == V['frame_hello']
    assert kk._frame(kk._OP_POLLFD) == V['frame_pollfd']
    assert kk._bind_frame(kk._OP_BIND, 1, b'$.Fred') == V['frame_bind_replier']
    assert kk._bind_frame(kk._OP_UNBIND, 0, b'$.Fred.*') == V['frame_unbind_listener']
    assert kk._replier_frame(b'$.Fred') == V['frame_replier_query']
    assert kk._F_NEXTMSG == V['frame_nextmsg']
    assert kk._F_SEND == V['frame_send_empty']
    assert kk._frame(kk._OP_SEND, b'$.Fred' + b'dada') == V['frame_send_pointy']
    assert kk._u32_frame(kk._OP_MAXMSGS, 10) == V['frame_maxmsgs']
    assert kk._u32_frame(kk._OP_MSGONLYONCE, 0xFFFFFFFF) == V['frame_onlyonce_query']
    if H == 88:
        assert kk._frame(kk._OP_WRITE, Message('$.Fred', b'dada').to_bytes()) == \
            V['frame_write']
        assert kk._frame(kk._OP_SENDMSG, Message('$.Fred').to_bytes()) == \
            V['frame_sendmsg']
    assert kk._u32_frame(kk._OP_READ, 4096) == V['frame_read']
    assert kk._frame(kk._OP_WAITREAD) == V['frame_waitread']
    assert kk._F_RESET == V['frame_reset']


# ---------------------------------------------------------------- fake daemon

def _read_frame(conn):
    def exactly(n):
        buf = b''
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf
    head = exactly(4)
    (length,) = struct.unpack('=I', head)
    return head + exactly(length)


class FakeDaemon(object):
    """Answers a Ksock's requests from a script of (expected request, reply)
    pairs; ``expected`` is bytes or a function returning an error string."""

    def __init__(self, dir, script):
        self.path = os.path.join(dir, 'kbus0')
        self.script = script
        self.errors = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.listener.settimeout(10)
        self.pollpair = socket.socketpair()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.listener.accept()
            conn.settimeout(10)
            with conn:
                for i, (expected, reply) in enumerate(self.script):
                    req = _read_frame(conn)
                    if callable(expected):
                        err = expected(req)
                        if err:
                            self.errors.append('request %d: %s' % (i, err))
                    elif req != expected:
                        self.errors.append('request %d: got %s, expected %s'
                                           % (i, req.hex(), expected.hex()))
                    if req == V['frame_pollfd']:
                        socket.send_fds(conn, [reply],
                                        [self.pollpair[1].fileno()])
                    else:
                        conn.sendall(reply)
                # nothing more may come
                conn.settimeout(0.5)
                try:
                    extra = conn.recv(1)
                except socket.timeout:
                    extra = b''
                if extra:
                    self.errors.append('unexpected extra request bytes')
        except Exception as e:      # reported by finish()
            self.errors.append('fake daemon: %r' % (e,))

    def finish(self):
        self.thread.join(15)
        assert not self.thread.is_alive(), 'fake daemon still running'
        self.listener.close()
        self.pollpair[0].close()
        self.pollpair[1].close()
        assert self.errors == []


def _rep(status, payload=b''):
    return struct.pack('=Ii', 4 + len(payload), status) + payload


def _check_pointy_write(req):
    vec = V['pointy_header_h%d' % H]
    if req[:8] != struct.pack('=II', 4 + H, kk._OP_WRITE):
        return 'not a WRITE of %d bytes: %s' % (H, req[:8].hex())
    hdr = req[8:]
    ptr = ctypes.sizeof(ctypes.c_void_p)
    off = km._MessageHeaderStruct.name.offset
    if hdr[:off] != vec[:off] or hdr[off + 2 * ptr:] != vec[off + 2 * ptr:]:
        return 'pointy header differs from the vector: %s' % hdr.hex()
    if hdr[off:off + ptr] == bytes(ptr) or hdr[off + ptr:off + 2 * ptr] == bytes(ptr):
        return 'pointy header pointer fields are zero'
    return None


@pytest.mark.skipif(H != 88, reason='the frame vectors are for H=88 clients')
def test_ksock_speaks_the_vectors(monkeypatch):
    d = tempfile.mkdtemp(prefix='kbuspyv-')
    monkeypatch.setenv('KBUS_DIR', d)
    script = [
        (V['frame_hello'], V['frame_hello_reply']),
        (V['frame_pollfd'], V['frame_pollfd_reply']),
        (V['frame_bind_replier'], _rep(0)),
        (V['frame_unbind_listener'], _rep(0)),
        (V['frame_replier_query'], V['frame_replier_reply']),
        (V['frame_bind_replier'], V['frame_error_ebadmsg']),
        (V['frame_nextmsg'], V['frame_nextmsg_reply']),
        (V['frame_write'], _rep(104)),
        (V['frame_send_empty'], V['frame_send_reply']),
        (_check_pointy_write, _rep(H)),
        (V['frame_send_pointy'], V['frame_send_eagain']),
        (V['frame_send_empty'], V['frame_send_reply']),
        (V['frame_maxmsgs'], _rep(0, struct.pack('=I', 10))),
        (V['frame_onlyonce_query'], _rep(0, struct.pack('=I', 1))),
        (V['frame_read'], _rep(4, b'dada')),
        (kk._frame(kk._OP_NEXTREAD), V['frame_nextread_reply']),
        (kk._frame(kk._OP_NEXTREAD), _rep(0)),
        (kk._frame(99), V['frame_unknown_reply']),
    ]
    fake = FakeDaemon(d, script)
    try:
        k = Ksock(0)
        assert str(k) == 'Ksock device 0, id 1, mode read/write'
        assert k.fileno() >= 0 and k.fileno() != k.fd.fileno()
        assert k.bind('$.Fred', True) is None
        assert k.unbind('$.Fred.*') is None
        assert k.find_replier('$.Fred') == 3
        with pytest.raises(OSError) as e:
            k.bind(b'$.Fred', replier=True)
        assert e.value.errno == errno.EBADMSG
        assert k.next_msg() == 100
        assert k.write_data(Message('$.Fred', b'dada').to_bytes()) == 104
        assert k.send() == MessageId(0, 5)
        k.write_msg(Message('$.Fred', 'dada'))
        with pytest.raises(OSError) as e:
            k.send()
        assert e.value.errno == errno.EAGAIN
        assert k.send() == MessageId(0, 5)      # a retry carries no payload
        assert k.set_max_messages(10) == 10
        assert k.want_messages_once(just_ask=True) == 1
        assert k.read_data(4096) == b'dada'
        m = k.read_next_msg()
        assert type(m) is Message
        assert m == Message('$.Fred', b'dada', id=MessageId(0, 5), from_=3)
        assert k.read_next_msg() is None
        with pytest.raises(OSError) as e:
            k._op(kk._frame(99))
        assert e.value.errno == errno.ENOTTY
        k.close()
    finally:
        fake.finish()
        shutil.rmtree(d, ignore_errors=True)


def test_hello_failure_raises_and_closes(monkeypatch):
    d = tempfile.mkdtemp(prefix='kbuspyv-')
    monkeypatch.setenv('KBUS_DIR', d)
    path = os.path.join(d, 'kbus0')
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    listener.settimeout(10)
    result = []

    def serve():
        conn, _ = listener.accept()
        with conn:
            result.append(_read_frame(conn))
            conn.sendall(_rep(-errno.EPROTO))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with pytest.raises(OSError) as e:
        Ksock(0, 'r')
    assert e.value.errno == errno.EPROTO
    t.join(10)
    assert result == [struct.pack('=IIIII', 16, 64, 1, 1 | 4, H)]   # 'r', lazy poll fd
    listener.close()
    os.unlink(path)
    os.rmdir(d)
