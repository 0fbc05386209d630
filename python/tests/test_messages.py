"""Pure tests of kbus.messages (no daemon): spec 11.1, 11.3-11.5, 3."""

import ctypes
import struct

import pytest

import kbus
import kbus.messages as km
from kbus import (Message, Announcement, Request, Reply, Status, MessageId,
                  OrigFrom, reply_to, stateful_request,
                  split_replier_bind_event_data)

BIND_EVENT_DATA = struct.pack('=III', 1, 3, 6) + b'$.Fred\0\0'


# ---------------------------------------------------------------- module

def test_reexports_of_spec_11_1():
    for name in ['Ksock', 'Message', 'Announcement', 'Request', 'Reply',
                 'Status', 'MessageId', 'OrigFrom', 'reply_to',
                 'stateful_request', 'split_replier_bind_event_data',
                 'read_bindings', 'BindStruct', 'ReplierStruct',
                 'SendResultStruct', 'MSG_HEADER_LEN', 'calc_padded_name_len',
                 'calc_padded_data_len', 'calc_entire_message_len',
                 'message_from_parts', 'hexdata', 'hexify', 'c_data_as_bytes']:
        assert hasattr(kbus, name), name
    namespace = {}
    exec('from kbus import *', namespace)
    for name in ['Ksock', 'Message', 'Request', 'reply_to', 'MessageId',
                 'stateful_request', 'read_bindings', 'MSG_HEADER_LEN']:
        assert name in namespace, name
    import importlib
    ksock_mod = importlib.import_module('kbus.ksock')
    assert kbus.Ksock is ksock_mod.Ksock
    assert kbus.Message is km.Message


def test_header_struct_layout():
    fields = [f[0] for f in km._MessageHeaderStruct._fields_]
    assert fields == ['start_guard', 'id', 'in_reply_to', 'to', 'from_',
                      'orig_from', 'final_to', 'extra', 'flags', 'name_len',
                      'data_len', 'name', 'data', 'end_guard']
    ptr = ctypes.sizeof(ctypes.c_void_p)
    H = km._MessageHeaderStruct
    assert H.id.offset == 4
    assert H.in_reply_to.offset == 12
    assert H.to.offset == 20
    assert H.from_.offset == 24
    assert H.orig_from.offset == 28
    assert H.final_to.offset == 36
    assert H.extra.offset == 44
    assert H.flags.offset == 48
    assert H.name_len.offset == 52
    assert H.data_len.offset == 56
    if ptr == 8:
        assert (H.name.offset, H.data.offset, H.end_guard.offset) == (64, 72, 80)
        assert km.MSG_HEADER_LEN == kbus.MSG_HEADER_LEN == 88
    else:
        assert (H.name.offset, H.data.offset, H.end_guard.offset) == (60, 64, 68)
        assert km.MSG_HEADER_LEN == 72
    assert ctypes.sizeof(H) == km.MSG_HEADER_LEN


def test_header_struct_field_types_are_the_originals():
    """KBUS-SPEC.md 11.3 / 3.1: the original module's private ctypes header
    has ``name`` as c_char_p and ``data`` as POINTER(c_uint8), so its suite
    can build a header from those types."""
    H = km._MessageHeaderStruct
    types = dict(H._fields_)
    assert types['name'] is ctypes.c_char_p
    assert types['data'] is ctypes.POINTER(ctypes.c_uint8)
    data = (ctypes.c_uint8 * 4)(1, 2, 3, 4)
    h = H(km._START_GUARD, MessageId(0, 0), MessageId(0, 0), 0, 0,
          OrigFrom(0, 0), OrigFrom(0, 0), 0, 0, 6, 4, b'$.Fred',
          ctypes.cast(data, ctypes.POINTER(ctypes.c_uint8)), km._END_GUARD)
    assert h.name == b'$.Fred'
    assert [h.data[i] for i in range(4)] == [1, 2, 3, 4]
    # A pointy Message made from such a header sends what it points at.
    assert ctypes.string_at(ctypes.cast(h.data, ctypes.c_void_p).value, 4) == bytes([1, 2, 3, 4])


def test_equal_header_structs_compare_equal():
    """Two headers with the same fields are equal (the original suite
    compares headers it built with headers read back)."""
    a = km.message_from_parts(MessageId(1, 2), None, 3, 4, None,
                              OrigFrom(5, 6), 0x10, '$.Fred', b'dada')
    b = km.message_from_parts(MessageId(1, 2), None, 3, 4, None,
                              OrigFrom(5, 6), 0x10, '$.Fred', b'dada')
    assert a is not b
    assert a == b and not (a != b)
    assert hash(a) == hash(b)
    # Each field counts: the id, a scalar, the name and the data bytes.
    for other in (km.message_from_parts(MessageId(1, 3), None, 3, 4, None,
                                        OrigFrom(5, 6), 0x10, '$.Fred', b'dada'),
                  km.message_from_parts(MessageId(1, 2), None, 9, 4, None,
                                        OrigFrom(5, 6), 0x10, '$.Fred', b'dada'),
                  km.message_from_parts(MessageId(1, 2), None, 3, 4, None,
                                        OrigFrom(5, 6), 0x10, '$.Jim', b'dada'),
                  km.message_from_parts(MessageId(1, 2), None, 3, 4, None,
                                        OrigFrom(5, 6), 0x10, '$.Fred', b'dado')):
        assert a != other and not (a == other)
    # No data on either side: equal.
    c = km.message_from_parts(None, None, 0, 0, None, None, 0, '$.Fred', None)
    d = km.message_from_parts(None, None, 0, 0, None, None, 0, '$.Fred', None)
    assert c == d
    assert (a == 'not a header') is False


def test_struct_bytes_helpers():
    h = km.message_from_parts(MessageId(1, 2), None, 3, 4, None,
                              OrigFrom(5, 6), 0x10, '$.Fred', b'dada')
    b = km._struct_to_bytes(h)
    assert len(b) == km.MSG_HEADER_LEN
    h2 = km._struct_from_bytes(km._MessageHeaderStruct, b)
    assert km._struct_to_bytes(h2) == b
    assert h2.id == MessageId(1, 2) and h2.final_to == OrigFrom(5, 6)
    assert (h2.to, h2.from_, h2.flags, h2.name_len, h2.data_len) == (3, 4, 0x10, 6, 4)
    assert h2.start_guard == Message.START_GUARD == 0x7375624B
    assert h2.end_guard == Message.END_GUARD == 0x4B627573
    with pytest.raises(ValueError):
        km._struct_from_bytes(km._MessageHeaderStruct, b[:10])


def test_argument_structs():
    assert [f[0] for f in kbus.BindStruct._fields_] == ['is_replier', 'len', 'name']
    assert [f[0] for f in kbus.ReplierStruct._fields_] == ['return_id', 'len', 'name']
    assert [f[0] for f in kbus.SendResultStruct._fields_] == ['retval', 'msg_id']
    assert kbus.SendResultStruct._fields_[0][1] is ctypes.c_int32
    r = kbus.SendResultStruct(-11, MessageId(0, 6))
    assert r.retval == -11 and r.msg_id == MessageId(0, 6)


def test_flag_constants():
    assert Message.WANT_A_REPLY == 1
    assert Message.WANT_YOU_TO_REPLY == 2
    assert Message.SYNTHETIC == 4
    assert Message.URGENT == 8
    assert Message.ALL_OR_WAIT == 0x100
    assert Message.ALL_OR_FAIL == 0x200
    assert Message.START_GUARD == 0x7375624B
    assert Message.END_GUARD == 0x4B627573


def test_lengths():
    H = km.MSG_HEADER_LEN
    assert kbus.calc_padded_name_len(6) == 8
    assert kbus.calc_padded_name_len(3) == 4
    assert kbus.calc_padded_name_len(4) == 8
    assert kbus.calc_padded_data_len(0) == 0
    assert kbus.calc_padded_data_len(4) == 4
    assert kbus.calc_padded_data_len(7) == 8
    assert kbus.calc_entire_message_len(6, 0) == H + 12
    assert kbus.calc_entire_message_len(6, 4) == H + 16
    assert kbus.calc_entire_message_len(6, 7) == H + 20
    if H == 88:
        assert [kbus.calc_entire_message_len(6, d) for d in (0, 4, 7)] == [100, 104, 108]


def test_hexdata_hexify():
    assert kbus.hexdata(' ') == '\\x20'
    assert kbus.hexdata('ab1!') == 'ab1!'
    assert kbus.hexdata(b'a\x00\xff') == 'a\\x00\\xff'
    assert kbus.hexify('1234') == '31 32 33 34'
    assert kbus.hexify(b'\x00\xff') == '00 ff'
    assert kbus.hexify(b'') == ''


def test_c_data_as_bytes():
    arr = (ctypes.c_uint8 * 4)(1, 2, 3, 4)
    assert kbus.c_data_as_bytes(arr, 3) == b'\x01\x02\x03'
    m = Message.from_bytes(Message('$.Fred', b'dada').to_bytes())
    assert kbus.c_data_as_bytes(m.msg._data, 4) == b'dada'


# ---------------------------------------------------------------- ids

def test_message_id():
    i = MessageId(1, 2)
    assert (i.network_id, i.serial_num) == (1, 2)
    assert repr(i) == 'MessageId(1, 2)'
    assert str(i) == '[1:2]'
    assert i == MessageId(1, 2)
    assert not (i != MessageId(1, 2))
    assert i != MessageId(1, 3)
    assert i != (1, 2)
    assert not (i == (1, 2))
    assert i != OrigFrom(1, 2)
    assert MessageId() == MessageId(0, 0)


def test_message_id_ordering():
    assert MessageId(0, 5) < MessageId(0, 6)
    assert MessageId(0, 9) < MessageId(1, 0)
    assert MessageId(1, 0) > MessageId(0, 9)
    assert MessageId(0, 5) <= MessageId(0, 5)
    assert MessageId(0, 5) >= MessageId(0, 5)
    assert MessageId(0, 6) >= MessageId(0, 5)
    assert not (MessageId(0, 6) <= MessageId(0, 5))
    assert sorted([MessageId(1, 1), MessageId(0, 7), MessageId(0, 2)]) == \
        [MessageId(0, 2), MessageId(0, 7), MessageId(1, 1)]
    with pytest.raises(TypeError):
        MessageId(0, 1) < 3


def test_message_id_arithmetic():
    i = MessageId(3, 10)
    j = i + 5
    assert j == MessageId(3, 15)
    assert j is not i
    assert i == MessageId(3, 10)        # unchanged
    assert MessageId(0, 0xFFFFFFFF) + 1 == MessageId(0, 0)
    assert MessageId(0, 5) + (-2) == MessageId(0, 3)
    k = i
    k += 1
    assert k == MessageId(3, 11) and i == MessageId(3, 10)
    for bad in (1.0, '1', MessageId(0, 1), None):
        with pytest.raises(TypeError):
            i + bad


def test_ids_are_unhashable():
    with pytest.raises(TypeError):
        hash(MessageId(0, 1))
    with pytest.raises(TypeError):
        hash(OrigFrom(0, 1))


def test_orig_from():
    o = OrigFrom(1, 2)
    assert (o.network_id, o.local_id) == (1, 2)
    assert repr(o) == 'OrigFrom(1, 2)'
    assert str(o) == '(1,2)'
    assert o == OrigFrom(1, 2)
    assert o != OrigFrom(2, 1)
    assert o != MessageId(1, 2)
    assert OrigFrom(1, 2) < OrigFrom(1, 3) < OrigFrom(2, 0)
    assert OrigFrom(2, 0) >= OrigFrom(1, 9)
    with pytest.raises(TypeError):
        o + 1


# ---------------------------------------------------------------- Message

def test_message_basic_fields():
    m = Message('$.Fred', b'dada', to=1, from_=2, orig_from=OrigFrom(3, 4),
                final_to=OrigFrom(5, 6), in_reply_to=MessageId(7, 8),
                flags=0x10000, id=MessageId(9, 10))
    assert m.name == '$.Fred'
    assert m.data == b'dada'
    assert (m.to, m.from_, m.flags) == (1, 2, 0x10000)
    assert m.orig_from == OrigFrom(3, 4)
    assert m.final_to == OrigFrom(5, 6)
    assert m.in_reply_to == MessageId(7, 8)
    assert m.id == MessageId(9, 10)
    assert m.extract() == (MessageId(9, 10), MessageId(7, 8), 1, 2,
                           OrigFrom(3, 4), OrigFrom(5, 6), 0x10000, '$.Fred',
                           b'dada')


def test_message_defaults_and_none_fields():
    m = Message('$.Fred')
    assert m.id is None and m.in_reply_to is None
    assert m.orig_from is None and m.final_to is None
    assert m._id == MessageId(0, 0)
    assert m._in_reply_to == MessageId(0, 0)
    assert m._orig_from == OrigFrom(0, 0)
    assert m._final_to == OrigFrom(0, 0)
    assert (m.to, m.from_, m.flags) == (0, 0, 0)
    assert m.data is None
    assert m.extract() == (None, None, 0, 0, None, None, 0, '$.Fred', None)


def test_message_data_forms():
    assert Message('$.Fred', 'Ahem').data == b'Ahem'
    assert Message('$.Fred', b'Ahem').data == b'Ahem'
    assert Message('$.Fred', bytearray(b'Ahem')).data == b'Ahem'
    assert Message('$.Fred', '').data is None
    assert Message('$.Fred', b'').data is None
    assert Message('$.Fred', None).data is None
    assert Message('$.Fred', '\u00e9').data == b'\xc3\xa9'
    assert Message('$.Fred', '\u00e9', encoding='latin-1').data == b'\xe9'
    with pytest.raises(UnicodeEncodeError):
        Message('$.Fred', '\u00e9', encoding='ascii')
    assert Message('$.Fred', '\u00e9', encoding='ascii',
                   errors='replace').data == b'?'


def test_message_name_checks():
    with pytest.raises(ValueError) as e:
        Message('Fred')
    assert str(e.value) == 'Message name "Fred" does not start "$."'
    with pytest.raises(ValueError):
        Message('$.')
    with pytest.raises(ValueError):
        Message('$')
    with pytest.raises(ValueError):
        Message('')
    assert Message('$.a').name == '$.a'
    assert Message(b'$.Fred').name == '$.Fred'


def test_message_repr_examples():
    m = Message('$.Actor.Speak', data=b'Ahem', from_=113, id=MessageId(0, 338))
    assert repr(m) == ("Message('$.Actor.Speak', data=b'Ahem', from_=113, "
                       "id=MessageId(0, 338))")
    m = Message('$.Fred', b'x', to=1, from_=2, orig_from=OrigFrom(3, 4),
                final_to=OrigFrom(5, 6), in_reply_to=MessageId(7, 8),
                flags=0x10, id=MessageId(9, 10))
    assert repr(m) == ("Message('$.Fred', data=b'x', to=1, from_=2, "
                       "orig_from=OrigFrom(3, 4), final_to=OrigFrom(5, 6), "
                       "in_reply_to=MessageId(7, 8), flags=0x00000010, "
                       "id=MessageId(9, 10))")
    assert repr(Message('$.Fred')) == "Message('$.Fred')"
    assert repr(Announcement('$.Fred', data=b'1234')) == \
        "Announcement('$.Fred', data=b'1234')"
    assert repr(Request('$.Fred', data=b'1234', to=1234,
                        final_to=OrigFrom(12, 23))) == \
        ("Request('$.Fred', data=b'1234', to=1234, final_to=OrigFrom(12, 23), "
         "flags=0x00000001)")
    assert repr(Reply('$.Fred', to=27, in_reply_to=MessageId(0, 132))) == \
        "Reply('$.Fred', to=27, in_reply_to=MessageId(0, 132))"
    a = Announcement('$.Fred', b'd', to=1, from_=2, flags=0x8, id=MessageId(0, 3))
    assert repr(a) == ("Announcement('$.Fred', data=b'd', to=1, from_=2, "
                       "flags=0x00000008, id=MessageId(0, 3))")


def test_repr_evaluates_back():
    for m in [Message('$.Fred', b'x', to=1, from_=2, orig_from=OrigFrom(3, 4),
                      final_to=OrigFrom(5, 6), in_reply_to=MessageId(7, 8),
                      flags=0x10, id=MessageId(9, 10)),
              Announcement('$.Fred', b'1234', to=3),
              Request('$.Fred', b'1234', to=1234, final_to=OrigFrom(12, 23)),
              Reply('$.Fred', to=27, in_reply_to=MessageId(0, 132))]:
        again = eval(repr(m), vars(kbus))
        assert type(again) is type(m)
        assert again == m


def test_str_examples():
    m = Message('$.Actor.Speak', data=b'Ahem', from_=113, id=MessageId(0, 338))
    assert str(m) == "<Announcement '$.Actor.Speak', id=[0:338], from=113, data=b'Ahem'>"
    q = Message('$.Actor.Guildenstern.query', b'Were you speaking to me?',
                from_=1, flags=3, id=MessageId(0, 6))
    assert str(q) == ("<Request '$.Actor.Guildenstern.query', id=[0:6], from=1, "
                      "flags=0x3 (REQ,YOU), data=b'Were you speaking to me?'>")
    r = Reply('$.Actor.Guildenstern.query', b'Yes, I was', to=1,
              in_reply_to=MessageId(0, 6))
    assert str(r) == ("<Reply '$.Actor.Guildenstern.query', to=1, "
                      "in_reply_to=[0:6], data=b'Yes, I was'>")
    s = Message('$.KBUS.Replier.GoneAway', to=4, from_=5,
                in_reply_to=MessageId(0, 9), flags=4, id=MessageId(0, 12))
    assert str(s) == ("<Status '$.KBUS.Replier.GoneAway', id=[0:12], to=4, "
                      "from=5, in_reply_to=[0:9], flags=0x4 (SYN)>")
    e = Message('$.KBUS.ReplierBindEvent', BIND_EVENT_DATA, flags=0x204,
                id=MessageId(0, 7))
    assert str(e) == ("<ReplierBindEvent id=[0:7], flags=0x204 (SYN,aFL), "
                      "[Bind '$.Fred' for 3]>")
    u = Message('$.KBUS.ReplierBindEvent',
                struct.pack('=III', 0, 9, 8) + b'$.Fred.*\0\0\0\0',
                flags=0x204, id=MessageId(0, 8))
    assert str(u) == ("<ReplierBindEvent id=[0:8], flags=0x204 (SYN,aFL), "
                      "[Unbind '$.Fred.*' for 9]>")


def test_str_all_parts_and_flags():
    m = Message('$.Fred', b'x', to=1, from_=2, orig_from=OrigFrom(3, 4),
                final_to=OrigFrom(5, 6), flags=0x30F | 0x10000,
                id=MessageId(9, 10))
    assert str(m) == ("<Request '$.Fred', id=[9:10], to=1, from=2, "
                      "orig_from=(3,4), final_to=(5,6), "
                      "flags=0x1030f (REQ,YOU,SYN,URG,aFL,aWT), data=b'x'>")
    assert str(Message('$.Fred', flags=0x10000)) == \
        "<Announcement '$.Fred', flags=0x10000>"
    assert str(Message('$.Fred')) == "<Announcement '$.Fred'>"
    assert str(Message('$.Fred', flags=0x100)) == \
        "<Announcement '$.Fred', flags=0x100 (aWT)>"
    assert str(Request('$.Actor.CoinToss', 'Head', to=115)) == \
        "<Request '$.Actor.CoinToss', to=115, flags=0x1 (REQ), data=b'Head'>"
    # A reply whose name starts $.KBUS. is a Status, even the bind event name
    st = Message('$.KBUS.ReplierBindEvent', in_reply_to=MessageId(0, 1))
    assert str(st).startswith("<Status '$.KBUS.ReplierBindEvent'")
    assert str(Message('$.KBUSX.Fred', in_reply_to=MessageId(0, 1))).startswith('<Reply ')


def test_equality():
    a = Message('$.Fred', b'x', to=1, id=MessageId(0, 1))
    b = Message('$.Fred', b'x', to=1, id=MessageId(0, 1))
    assert a == b and not (a != b)
    assert a != Message('$.Fred', b'x', to=1, id=MessageId(0, 2))
    assert a != Message('$.Fred', b'y', to=1, id=MessageId(0, 1))
    assert a != Message('$.Jim', b'x', to=1, id=MessageId(0, 1))
    assert a != Message('$.Fred', b'x', to=1, id=MessageId(0, 1), flags=8)
    assert a != Message('$.Fred', b'x', to=1, id=MessageId(0, 1), from_=3)
    assert a != Message('$.Fred', b'x', to=1, id=MessageId(0, 1),
                        orig_from=OrigFrom(0, 1))
    assert a != Message('$.Fred', to=1, id=MessageId(0, 1))
    assert not (a == 'fred') and a != 'fred'
    assert not (a == None) and a != None      # noqa: E711
    # extra is ignored; the pointy and the entire forms compare equal
    e = Message.from_bytes(a.to_bytes())
    assert e == a and a == e
    e.msg.header.extra = 99
    assert e == a
    with pytest.raises(TypeError):
        hash(a)


def test_equivalent():
    a = Message('$.Fred', b'x', to=1, from_=2, id=MessageId(0, 1), flags=1)
    b = Message('$.Fred', b'x', to=1, from_=3, id=MessageId(0, 9),
                in_reply_to=MessageId(0, 4), orig_from=OrigFrom(1, 1),
                final_to=OrigFrom(2, 2))
    assert a.equivalent(b) and b.equivalent(a)
    assert a != b
    assert not a.equivalent(Message('$.Fred', b'x', to=2))
    assert not a.equivalent(Message('$.Fred', b'y', to=1))
    assert not a.equivalent(Message('$.Jim', b'x', to=1))
    assert not a.equivalent('fred')


def test_to_bytes_from_bytes():
    m = Message('$.Fred', b'1234567', to=1, from_=2, orig_from=OrigFrom(3, 4),
                final_to=OrigFrom(5, 6), in_reply_to=MessageId(7, 8),
                flags=0x10, id=MessageId(9, 10))
    b = m.to_bytes()
    assert len(b) == m.total_length() == km.calc_entire_message_len(6, 7)
    assert not m.is_entire()
    assert isinstance(m.msg, km._MessageHeaderStruct)
    e = Message.from_bytes(b)
    assert e.is_entire()
    assert isinstance(e.msg, km._EntireMessageStructBaseclass)
    assert ctypes.sizeof(e.msg) == len(b)
    # NULL pointers: name None (c_char_p), data a NULL POINTER(c_uint8).
    assert e.msg.header.name is None and not e.msg.header.data
    assert e.to_bytes() == b
    assert e == m
    assert e.total_length() == len(b)
    assert type(e) is Message
    # no data
    n = Message('$.Fred')
    assert len(n.to_bytes()) == km.MSG_HEADER_LEN + 12
    assert Message.from_bytes(n.to_bytes()).data is None
    # the pointy header really points at name and data
    assert m.msg.name == b'$.Fred'
    assert ctypes.string_at(m.msg.data, 7) == b'1234567'
    assert not n.msg.data   # a NULL POINTER(c_uint8)


def test_from_bytes_errors():
    with pytest.raises(ValueError) as e:
        Message.from_bytes(b'abc')
    assert str(e.value).startswith('Cannot form entire message from string "')
    assert str(e.value).endswith('" of length 3')
    good = Message('$.Fred', b'dada').to_bytes()
    with pytest.raises(ValueError) as e:
        Message.from_bytes(b'XXXX' + good[4:])
    assert 'start guard' in str(e.value)
    with pytest.raises(ValueError):
        Message.from_bytes(good[:-4])          # too short for name+data
    with pytest.raises(ValueError):
        Message.from_bytes(good[:-4] + b'XXXX')  # bad final guard


def test_flag_methods():
    m = Message('$.Fred')
    assert not m.is_request() and not m.is_urgent()
    m.set_want_reply()
    assert m.is_request() and m.flags == 1
    m.set_want_reply(False)
    assert not m.is_request() and m.flags == 0
    m.set_urgent()
    assert m.is_urgent() and m.flags == 8
    m.set_urgent(False)
    assert m.flags == 0
    assert Message('$.Fred', flags=2).wants_us_to_reply()
    assert not Message('$.Fred', flags=1).wants_us_to_reply()
    assert Message('$.Fred', flags=4).is_synthetic()
    assert not Message('$.Fred').is_synthetic()
    assert Message('$.Fred', in_reply_to=MessageId(0, 1)).is_reply()
    assert Message('$.Fred', in_reply_to=MessageId(1, 0)).is_reply()
    assert not Message('$.Fred').is_reply()
    assert Message('$.Fred', flags=1, to=3).is_stateful_request()
    assert not Message('$.Fred', flags=1).is_stateful_request()
    assert not Message('$.Fred', to=3).is_stateful_request()
    for f in (m.is_request, m.is_urgent, m.is_reply, m.wants_us_to_reply,
              m.is_synthetic, m.is_stateful_request):
        assert f() is False


# ---------------------------------------------------------------- subclasses

def test_announcement():
    a = Announcement('$.Fred', 'x', to=1, from_=2, flags=8, id=MessageId(0, 3))
    assert (a.to, a.from_, a.flags, a.id) == (1, 2, 8, MessageId(0, 3))
    with pytest.raises(TypeError):
        Announcement('$.Fred', in_reply_to=MessageId(0, 1))
    with pytest.raises(TypeError):
        Announcement('$.Fred', orig_from=OrigFrom(0, 1))
    with pytest.raises(TypeError) as e:
        a.set_want_reply()
    assert str(e.value) == 'Announcements are not Requests'
    src = Message('$.Fred', b'x', in_reply_to=MessageId(0, 5),
                  orig_from=OrigFrom(1, 2), final_to=OrigFrom(3, 4), to=7)
    for b in (Announcement.from_message(src),
              Announcement.from_sequence(src.extract()),
              Announcement.from_bytes(src.to_bytes())):
        assert type(b) is Announcement
        assert b.in_reply_to is None and b.orig_from is None and b.final_to is None
        assert b.to == 7 and b.data == b'x'
    with pytest.raises(TypeError):
        Announcement.from_message(src, in_reply_to=MessageId(0, 1))


def test_request():
    r = Request('$.Fred', 'x')
    assert r.flags == Message.WANT_A_REPLY and r.is_request()
    assert not r.is_stateful_request()
    r2 = Request('$.Fred', flags=0x8)
    assert r2.flags == 0x9
    s = Request('$.Fred', to=5, final_to=OrigFrom(1, 2))
    assert s.is_stateful_request() and s.final_to == OrigFrom(1, 2)
    with pytest.raises(TypeError):
        r.set_want_reply()
    with pytest.raises(TypeError):
        r.set_want_reply(False)
    with pytest.raises(TypeError):
        Request('$.Fred', in_reply_to=MessageId(0, 1))
    src = Message('$.Fred', b'x', to=3)
    for q in (Request.from_message(src), Request.from_sequence(src.extract()),
              Request.from_bytes(src.to_bytes())):
        assert type(q) is Request and q.is_request() and q.to == 3


def test_reply():
    r = Reply('$.Fred', 'x', to=3, in_reply_to=MessageId(0, 9),
              orig_from=OrigFrom(1, 2))
    assert r.is_reply() and r.in_reply_to == MessageId(0, 9)
    for bad in (dict(), dict(in_reply_to=None),
                dict(in_reply_to=MessageId(0, 0))):
        with pytest.raises(ValueError) as e:
            Reply('$.Fred', **bad)
        assert str(e.value) == 'A Reply must specify in_reply_to'
    with pytest.raises(ValueError):
        Reply.from_message(Message('$.Fred'))
    with pytest.raises(ValueError):
        Reply.from_bytes(Message('$.Fred').to_bytes())
    assert type(Reply.from_message(r)) is Reply
    assert Reply.from_message(Message('$.Fred'),
                              in_reply_to=MessageId(0, 4)).in_reply_to == MessageId(0, 4)
    with pytest.raises(TypeError):
        Reply('$.Fred', final_to=OrigFrom(1, 1), in_reply_to=MessageId(0, 1))


def test_status():
    with pytest.raises(NotImplementedError):
        Status('$.KBUS.Replier.GoneAway', in_reply_to=MessageId(0, 1))
    src = Message('$.KBUS.Replier.GoneAway', to=4, from_=5,
                  in_reply_to=MessageId(0, 9), flags=4, id=MessageId(0, 12))
    with pytest.raises(NotImplementedError):
        Status.from_message(src)
    with pytest.raises(NotImplementedError):
        Status.from_sequence(src.extract())
    s = Status.from_bytes(src.to_bytes())
    assert type(s) is Status and isinstance(s, Message)
    assert repr(s) == ("Status('$.KBUS.Replier.GoneAway', to=4, from_=5, "
                       "in_reply_to=MessageId(0, 9), flags=0x00000004, "
                       "id=MessageId(0, 12))")
    assert str(s) == str(src)


def test_from_message_overrides():
    m = Message('$.Fred', b'x', to=1, id=MessageId(0, 5))
    c = Message.from_message(m)
    assert c == m and c is not m
    c = Message.from_message(m, to=2, data=b'y', flags=8, from_=3)
    assert (c.to, c.data, c.flags, c.from_, c.id) == (2, b'y', 8, 3, MessageId(0, 5))
    c = Message.from_message(m, id=None, to=None)       # None: no override
    assert c.id == MessageId(0, 5) and c.to == 1
    with pytest.raises(TypeError):
        Message.from_message(m, name='$.Jim')
    with pytest.raises(TypeError):
        Message.from_message(m, colour='red')
    # the copy does not share the header
    c = Message.from_message(m)
    c.set_urgent()
    assert not m.is_urgent()


def test_from_sequence():
    seq = (MessageId(0, 1), MessageId(0, 2), 3, 4, OrigFrom(5, 6),
           OrigFrom(7, 8), 9, '$.Fred', b'data')
    m = Message.from_sequence(seq)
    assert m.extract() == seq
    m = Message.from_sequence(seq, to=10)
    assert m.to == 10
    with pytest.raises(ValueError):
        Message.from_sequence(seq[:8])
    with pytest.raises(ValueError):
        Message.from_sequence(seq + (1,))


def test_cast():
    a = Message('$.Fred', b'x').cast()
    assert type(a) is Announcement
    q = Message('$.Fred', flags=3, to=4).cast()
    assert type(q) is Request and q.to == 4 and q.flags == 3
    r = Message('$.Fred', in_reply_to=MessageId(0, 3), to=2).cast()
    assert type(r) is Reply and r.in_reply_to == MessageId(0, 3)
    s = Message('$.KBUS.Replier.Unbound', in_reply_to=MessageId(0, 3),
                flags=4).cast()
    assert type(s) is Status
    e = Message('$.KBUS.ReplierBindEvent', BIND_EVENT_DATA, flags=0x204).cast()
    assert type(e) is Announcement
    full = Message('$.Fred', b'x', to=1, from_=2, in_reply_to=MessageId(0, 3),
                   orig_from=OrigFrom(4, 5), id=MessageId(0, 7), flags=0x10)
    assert full.cast() == full
    src = Message.from_bytes(full.to_bytes())
    assert src.cast() == full


# ---------------------------------------------------------------- helpers

def test_reply_to():
    req = Message('$.Fred', b'question', from_=7, id=MessageId(0, 5), flags=3 | 8,
                  to=9)
    rep = reply_to(req, 'answer')
    assert type(rep) is Reply
    assert (rep.name, rep.data, rep.to, rep.in_reply_to, rep.flags) == \
        ('$.Fred', b'answer', 7, MessageId(0, 5), 0)
    assert reply_to(req).data is None
    assert reply_to(req, flags=Message.URGENT).flags == 8
    for flags in (0, 1, 2):
        bad = Message('$.Fred', from_=7, id=MessageId(0, 5), flags=flags)
        with pytest.raises(ValueError) as e:
            reply_to(bad)
        assert str(e.value).startswith(
            'Cannot form a reply to a message that does not have '
            'WANT_A_REPLY and WANT_YOU_TO_REPLY set: ')


def test_stateful_request():
    rep = Message('$.Fred', b'answer', from_=115, to=113,
                  in_reply_to=MessageId(0, 5), orig_from=OrigFrom(2, 9))
    s = stateful_request(rep, '$.Actor.CoinToss', 'Head')
    assert type(s) is Request
    assert str(s) == ("<Request '$.Actor.CoinToss', to=115, final_to=(2,9), "
                      "flags=0x1 (REQ), data=b'Head'>")
    s2 = stateful_request(s, '$.Jim', b'again', from_=1, flags=8,
                          id=MessageId(0, 3))
    assert (s2.to, s2.final_to, s2.from_, s2.flags, s2.id) == \
        (115, OrigFrom(2, 9), 1, 9, MessageId(0, 3))
    for bad in (Message('$.Fred'), Request('$.Fred')):
        with pytest.raises(ValueError) as e:
            stateful_request(bad, '$.Jim')
        assert str(e.value) == ('The first argument of stateful_request() must '
                                'be a Reply or a previous Stateful Request')


def test_split_replier_bind_event_data():
    assert split_replier_bind_event_data(BIND_EVENT_DATA) == (1, 3, '$.Fred')
    data = struct.pack('=III', 0, 12, 8) + b'$.Fred.%\0\0\0\0'
    assert split_replier_bind_event_data(data) == (0, 12, '$.Fred.%')
    with pytest.raises(ValueError):
        split_replier_bind_event_data(b'\x01\x00')


def test_message_from_parts_is_pointy():
    h = kbus.message_from_parts(None, None, 0, 0, None, None, 0, '$.Fred', 'dada')
    assert isinstance(h, km._MessageHeaderStruct)
    assert h.name == b'$.Fred' and h.name_len == 6
    assert h.data and h.data_len == 4
    assert ctypes.string_at(h.data, 4) == b'dada'
    h = kbus.message_from_parts(None, None, 0, 0, None, None, 0, '$.Fred', None)
    assert not h.data and h.data_len == 0   # a NULL POINTER(c_uint8)
    h = kbus.message_from_parts(None, None, 0, 0, None, None, 0, '$.Fred',
                                '\u00e9', 'latin-1', 'strict')
    assert ctypes.string_at(h.data, 1) == b'\xe9'


def test_entire_message_structs():
    e = km.entire_message_from_parts(MessageId(0, 3), None, 1, 2, None, None,
                                     0x10, '$.Fred', 'dada')
    assert isinstance(e, km._EntireMessageStructBaseclass)
    assert km._struct_to_bytes(e) == Message('$.Fred', b'dada', to=1, from_=2,
                                             flags=0x10,
                                             id=MessageId(0, 3)).to_bytes()
    assert bytes(e._name[:6]) == b'$.Fred' and bytes(e._data) == b'dada'
    assert e._end_guard == Message.END_GUARD
    e2 = km.entire_message_from_bytes(km._struct_to_bytes(e))
    assert km._struct_to_bytes(e2) == km._struct_to_bytes(e)
    with pytest.raises(ValueError):
        km.entire_message_from_bytes(b'short')
