"""KBUS messages: the Python view of ``struct kbus_message_header`` and friends.

The message layout is that of KBUS-SPEC.md section 3 for this interpreter's
ABI (``MSG_HEADER_LEN`` is 88 with 64-bit pointers, 72 with 32-bit ones).
The Python API is that of section 11 of the specification.

A Message holds its header in a ctypes structure, ``msg``:

* a message built by a constructor (or ``from_message``/``from_sequence``) is
  *pointy*: ``msg`` is a ``_MessageHeaderStruct`` whose ``name`` and ``data``
  fields point at the name and data bytes;
* a message built by ``from_bytes`` (which is how messages read from KBUS are
  built) is *entire*: ``msg`` is a structure holding the header, the padded
  name, the padded data and the final end guard, exactly as KBUS hands it out.
"""

import ctypes
import string
import struct

_START_GUARD = 0x7375624B
_END_GUARD = 0x4B627573

_BIT_WANT_A_REPLY = 0x00000001
_BIT_WANT_YOU_TO_REPLY = 0x00000002
_BIT_SYNTHETIC = 0x00000004
_BIT_URGENT = 0x00000008
_BIT_ALL_OR_WAIT = 0x00000100
_BIT_ALL_OR_FAIL = 0x00000200

KBUS_MAX_NAME_LEN = 1000

KBUS_MSG_NAME_REPLIER_GONEAWAY = '$.KBUS.Replier.GoneAway'
KBUS_MSG_NAME_REPLIER_IGNORED = '$.KBUS.Replier.Ignored'
KBUS_MSG_NAME_REPLIER_UNBOUND = '$.KBUS.Replier.Unbound'
KBUS_MSG_NAME_REPLIER_DISAPPEARED = '$.KBUS.Replier.Disappeared'
KBUS_MSG_NAME_ERROR_SENDING = '$.KBUS.ErrorSending'
KBUS_MSG_NAME_UNBIND_EVENTS_LOST = '$.KBUS.UnbindEventsLost'
KBUS_MSG_NAME_REPLIER_BIND_EVENT = '$.KBUS.ReplierBindEvent'

_BIND_EVENT_NAME_B = KBUS_MSG_NAME_REPLIER_BIND_EVENT.encode('ascii')

# Flag mnemonics, in the order the printers use them (spec 3.3, 11.3).
_FLAG_MNEMONICS = ((_BIT_WANT_A_REPLY, 'REQ'), (_BIT_WANT_YOU_TO_REPLY, 'YOU'),
                   (_BIT_SYNTHETIC, 'SYN'), (_BIT_URGENT, 'URG'),
                   (_BIT_ALL_OR_FAIL, 'aFL'), (_BIT_ALL_OR_WAIT, 'aWT'))


# ---------------------------------------------------------------------------
# Ids

class MessageId(ctypes.Structure):
    """A message id: ``MessageId(network_id, serial_num)``.

    ``str`` gives ``[n:s]``, ``repr`` gives ``MessageId(n, s)``. Ids compare
    lexicographically; ``id + n`` (n an int) is a new id with ``serial_num``
    advanced by n (modulo 2**32). Like the original, it is unhashable.
    """
    _fields_ = [('network_id', ctypes.c_uint32),
                ('serial_num', ctypes.c_uint32)]

    def __repr__(self):
        return 'MessageId(%u, %u)' % (self.network_id, self.serial_num)

    def __str__(self):
        return '[%u:%u]' % (self.network_id, self.serial_num)

    def __eq__(self, other):
        if not isinstance(other, MessageId):
            return False
        return (self.network_id == other.network_id and
                self.serial_num == other.serial_num)

    def __ne__(self, other):
        return not self.__eq__(other)

    def __lt__(self, other):
        if not isinstance(other, MessageId):
            return NotImplemented
        return (self.network_id, self.serial_num) < (other.network_id, other.serial_num)

    def __le__(self, other):
        if not isinstance(other, MessageId):
            return NotImplemented
        return (self.network_id, self.serial_num) <= (other.network_id, other.serial_num)

    def __gt__(self, other):
        if not isinstance(other, MessageId):
            return NotImplemented
        return (self.network_id, self.serial_num) > (other.network_id, other.serial_num)

    def __ge__(self, other):
        if not isinstance(other, MessageId):
            return NotImplemented
        return (self.network_id, self.serial_num) >= (other.network_id, other.serial_num)

    __hash__ = None

    def __add__(self, other):
        if not isinstance(other, int):
            raise TypeError('Can only add an integer to a MessageId, not %r'
                            % (other,))
        return MessageId(self.network_id, (self.serial_num + other) & 0xFFFFFFFF)


class OrigFrom(ctypes.Structure):
    """Where a message came from (or is going to) across Limpets:
    ``OrigFrom(network_id, local_id)``; ``str`` gives ``(n,l)``."""
    _fields_ = [('network_id', ctypes.c_uint32),
                ('local_id', ctypes.c_uint32)]

    def __repr__(self):
        return 'OrigFrom(%u, %u)' % (self.network_id, self.local_id)

    def __str__(self):
        return '(%u,%u)' % (self.network_id, self.local_id)

    def __eq__(self, other):
        if not isinstance(other, OrigFrom):
            return False
        return (self.network_id == other.network_id and
                self.local_id == other.local_id)

    def __ne__(self, other):
        return not self.__eq__(other)

    def __lt__(self, other):
        if not isinstance(other, OrigFrom):
            return NotImplemented
        return (self.network_id, self.local_id) < (other.network_id, other.local_id)

    def __le__(self, other):
        if not isinstance(other, OrigFrom):
            return NotImplemented
        return (self.network_id, self.local_id) <= (other.network_id, other.local_id)

    def __gt__(self, other):
        if not isinstance(other, OrigFrom):
            return NotImplemented
        return (self.network_id, self.local_id) > (other.network_id, other.local_id)

    def __ge__(self, other):
        if not isinstance(other, OrigFrom):
            return NotImplemented
        return (self.network_id, self.local_id) >= (other.network_id, other.local_id)

    __hash__ = None


# ---------------------------------------------------------------------------
# Structures

class _MessageHeaderStruct(ctypes.Structure):
    """``struct kbus_message_header`` (spec 3.1), native ABI."""
    _fields_ = [('start_guard', ctypes.c_uint32),
                ('id', MessageId),
                ('in_reply_to', MessageId),
                ('to', ctypes.c_uint32),
                ('from_', ctypes.c_uint32),
                ('orig_from', OrigFrom),
                ('final_to', OrigFrom),
                ('extra', ctypes.c_uint32),
                ('flags', ctypes.c_uint32),
                ('name_len', ctypes.c_uint32),
                ('data_len', ctypes.c_uint32),
                ('name', ctypes.c_char_p),
                ('data', ctypes.POINTER(ctypes.c_uint8)),
                ('end_guard', ctypes.c_uint32)]

    # The field types are the original module's (``name`` a c_char_p,
    # ``data`` a POINTER(c_uint8)), so a header can be built from those.
    # Two headers are equal when every field is: the name by its bytes, the
    # data by the data_len bytes it points at (NULL is no bytes).
    _SCALARS = ('start_guard', 'to', 'from_', 'extra', 'flags', 'name_len',
                'data_len', 'end_guard')

    def _data_bytes(self):
        addr = ctypes.cast(self.data, ctypes.c_void_p).value
        if not addr or not self.data_len:
            return b''
        return ctypes.string_at(addr, self.data_len)

    def _key(self):
        return (tuple(getattr(self, f) for f in self._SCALARS),
                (self.id.network_id, self.id.serial_num),
                (self.in_reply_to.network_id, self.in_reply_to.serial_num),
                (self.orig_from.network_id, self.orig_from.local_id),
                (self.final_to.network_id, self.final_to.local_id),
                self.name)

    def __eq__(self, other):
        if not isinstance(other, _MessageHeaderStruct):
            return NotImplemented
        return (self._key() == other._key() and
                self._data_bytes() == other._data_bytes())

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self):
        return hash(self._key())


MSG_HEADER_LEN = ctypes.sizeof(_MessageHeaderStruct)

# Byte offsets used when comparing headers: everything but `extra` and the
# pointer fields (which are addresses, or 0 in the entire form).
_EXTRA_OFF = _MessageHeaderStruct.extra.offset
_FLAGS_OFF = _MessageHeaderStruct.flags.offset
_PAD_OFF = _MessageHeaderStruct.data_len.offset + 4
_END_GUARD_OFF = _MessageHeaderStruct.end_guard.offset
_NAME_PTR_OFF = _MessageHeaderStruct.name.offset
_PTR_SIZE = ctypes.sizeof(ctypes.c_void_p)


class BindStruct(ctypes.Structure):
    """``struct kbus_bind_request`` (BIND / UNBIND argument)."""
    _fields_ = [('is_replier', ctypes.c_uint32),
                ('len', ctypes.c_uint32),
                ('name', ctypes.c_char_p)]


class ReplierStruct(ctypes.Structure):
    """``struct kbus_bind_query`` (REPLIER argument)."""
    _fields_ = [('return_id', ctypes.c_uint32),
                ('len', ctypes.c_uint32),
                ('name', ctypes.c_char_p)]


class SendResultStruct(ctypes.Structure):
    """The result of SEND."""
    _fields_ = [('retval', ctypes.c_int32),
                ('msg_id', MessageId)]


class _ReplierBindEventHeader(ctypes.Structure):
    """The fixed part of ``struct kbus_replier_bind_event_data`` (spec 3.6)."""
    _fields_ = [('is_bind', ctypes.c_uint32),
                ('binder', ctypes.c_uint32),
                ('name_len', ctypes.c_uint32)]


class _EntireMessageStructBaseclass(ctypes.Structure):
    """Base class of the entire-message structures: ``header``, ``_name``
    (padded), ``_data`` (padded) and ``_end_guard``. One subclass exists
    per (padded name length, padded data length)."""
    _pack_ = 4


def _struct_to_bytes(s):
    """The bytes of a ctypes structure."""
    return ctypes.string_at(ctypes.addressof(s), ctypes.sizeof(s))


def _struct_from_bytes(struct_class, data):
    """A new ``struct_class`` instance built from the initial bytes of
    ``data``. ``ValueError`` if ``data`` is too short."""
    size = ctypes.sizeof(struct_class)
    if len(data) < size:
        raise ValueError('Cannot form %s from %d bytes (need %d)'
                         % (struct_class.__name__, len(data), size))
    return struct_class.from_buffer_copy(data)


def c_data_as_bytes(data, n):
    """The first ``n`` bytes of a ctypes array (or other ctypes object)."""
    return ctypes.string_at(ctypes.addressof(data), n)


# ---------------------------------------------------------------------------
# Lengths

def calc_padded_name_len(name_len):
    """Room for the name, at least one NUL, rounded up to 4 bytes."""
    return 4 * ((name_len + 1 + 3) // 4)


def calc_padded_data_len(data_len):
    """Room for the data, rounded up to 4 bytes."""
    return 4 * ((data_len + 3) // 4)


def calc_entire_message_len(name_len, data_len):
    """ENTIRE_LEN: header, padded name, padded data and the final guard."""
    return (MSG_HEADER_LEN + 4 * ((name_len + 4) // 4) +
            4 * ((data_len + 3) // 4) + 4)


_entire_classes = {}


def _entire_message_struct_class(name_len, data_len):
    """The entire-message structure class for these lengths (cached)."""
    key = (4 * ((name_len + 4) // 4), 4 * ((data_len + 3) // 4))
    cls = _entire_classes.get(key)
    if cls is None:
        class _EntireMessageStruct(_EntireMessageStructBaseclass):
            _pack_ = 4
            _fields_ = [('header', _MessageHeaderStruct),
                        ('_name', ctypes.c_char * key[0]),
                        ('_data', ctypes.c_uint8 * key[1]),
                        ('_end_guard', ctypes.c_uint32)]
        if len(_entire_classes) < 4096:
            _entire_classes[key] = _EntireMessageStruct
        cls = _EntireMessageStruct
    return cls


# ---------------------------------------------------------------------------
# Text helpers

_HEXDATA_KEEP = frozenset((string.ascii_letters + string.digits +
                           string.punctuation).encode('ascii'))


def _as_bytes(data):
    if isinstance(data, str):
        return data.encode('latin-1', 'backslashreplace')
    return bytes(data)


def hexdata(data):
    """Printable ASCII letters, digits and punctuation are kept, every other
    byte becomes ``\\xNN`` (so ``hexdata(' ') == '\\\\x20'``)."""
    out = []
    for b in _as_bytes(data):
        if b in _HEXDATA_KEEP:
            out.append(chr(b))
        else:
            out.append('\\x%02x' % b)
    return ''.join(out)


def hexify(data):
    """Space-separated two-digit hex: ``hexify('1234') == '31 32 33 34'``."""
    return ' '.join('%02x' % b for b in _as_bytes(data))


# ---------------------------------------------------------------------------
# Building structures

def _name_to_bytes(name):
    if isinstance(name, str):
        return name.encode('utf-8')
    return bytes(name)


def _data_to_bytes(data, encoding='utf-8', errors='strict'):
    if data is None:
        return None
    if isinstance(data, str):
        data = data.encode(encoding, errors)
    elif not isinstance(data, bytes):
        data = bytes(data)
    return data or None


def _id_values(value):
    """(a, b) for a MessageId / OrigFrom / 2-sequence / None."""
    if value is None:
        return 0, 0
    if isinstance(value, MessageId):
        return value.network_id, value.serial_num
    if isinstance(value, OrigFrom):
        return value.network_id, value.local_id
    a, b = value
    return a, b


if _PTR_SIZE == 8:
    _HEADER_PACK = struct.Struct('=15I4xQQI4x')
else:
    _HEADER_PACK = struct.Struct('=15IIII')
assert _HEADER_PACK.size == MSG_HEADER_LEN


def _pointy_header(name_b, data_b, id, in_reply_to, to, from_, orig_from,
                   final_to, flags):
    """A pointy header referring to name_b (bytes) and data_b (bytes or None)."""
    idn = ids = irn = irs = ofn = ofl = ftn = ftl = 0
    if id is not None:
        idn, ids = _id_values(id)
    if in_reply_to is not None:
        irn, irs = _id_values(in_reply_to)
    if orig_from is not None:
        ofn, ofl = _id_values(orig_from)
    if final_to is not None:
        ftn, ftl = _id_values(final_to)
    hdr = _MessageHeaderStruct.from_buffer_copy(_HEADER_PACK.pack(
        _START_GUARD, idn, ids, irn, irs, to or 0, from_ or 0, ofn, ofl,
        ftn, ftl, 0, (flags or 0) & 0xFFFFFFFF, len(name_b),
        len(data_b) if data_b else 0, 0, 0, _END_GUARD))
    hdr.name = name_b           # ctypes keeps a reference to name_b
    if data_b:
        ptr = ctypes.c_char_p(data_b)
        hdr._data_ref = ptr     # ...and we keep one to the data
        hdr.data = ctypes.cast(ptr, _U8_PTR)
    return hdr


_U8_PTR = ctypes.POINTER(ctypes.c_uint8)


def message_from_parts(id, in_reply_to, to, from_, orig_from, final_to,
                       flags, name, data, encoding='utf-8', errors='strict'):
    """A new *pointy* ``_MessageHeaderStruct``: its ``name`` field points to
    the (NUL terminated) name, its ``data`` field to the data (or is NULL).
    ``id``/``in_reply_to`` are MessageIds (or None), ``orig_from``/
    ``final_to`` OrigFroms (or None); ``data`` may be None, str or bytes."""
    return _pointy_header(_name_to_bytes(name),
                          _data_to_bytes(data, encoding, errors),
                          id, in_reply_to, to, from_, orig_from, final_to,
                          flags)


def entire_message_from_parts(id, in_reply_to, to, from_, orig_from,
                              final_to, flags, name, data,
                              encoding='utf-8', errors='strict'):
    """A new entire-message structure built from the given parts."""
    hdr = message_from_parts(id, in_reply_to, to, from_, orig_from, final_to,
                             flags, name, data, encoding, errors)
    return entire_message_from_bytes(_entire_bytes(
        hdr, _name_to_bytes(name), _data_to_bytes(data, encoding, errors)))


def entire_message_from_bytes(data):
    """A new entire-message structure from the bytes of an entire message."""
    if len(data) < MSG_HEADER_LEN:
        raise ValueError('Cannot form entire message from string "%s" of '
                         'length %d' % (hexdata(data), len(data)))
    hdr = _MessageHeaderStruct.from_buffer_copy(data)
    cls = _entire_message_struct_class(hdr.name_len, hdr.data_len)
    return _struct_from_bytes(cls, data)


_U32 = struct.Struct('=I')
_END_GUARD_BYTES = _U32.pack(_END_GUARD)
_ZEROS = bytes(8)


def _entire_bytes(hdr, name_b, data_b):
    """The entire form of the header hdr with this name and data."""
    h = _MessageHeaderStruct.from_buffer_copy(hdr)
    h.name = None
    h.data = None
    n = len(name_b)
    parts = [bytes(h), name_b, _ZEROS[:4 - (n & 3)]]
    if data_b:
        d = len(data_b)
        parts.append(data_b)
        parts.append(_ZEROS[:(4 - (d & 3)) & 3])
    parts.append(_END_GUARD_BYTES)
    return b''.join(parts)


# ABI-independent codec, used for checking the byte vectors of both ABIs.
_ABI_HEADERS = {88: struct.Struct('=15I4xQQI4x'), 72: struct.Struct('=15IIII')}


def _encode_entire_abi(header_len, fields, name_b, data_b):
    """Entire form for a client of the given header length. ``fields`` is
    the 15 leading u32 header words (start_guard ... data_len)."""
    hdr = _ABI_HEADERS[header_len].pack(*fields, 0, 0, _END_GUARD)
    n = len(name_b)
    d = len(data_b)
    return b''.join((hdr, name_b, _ZEROS[:4 - (n & 3)], data_b,
                     _ZEROS[:(4 - (d & 3)) & 3], _END_GUARD_BYTES))


def _decode_entire_abi(header_len, buf):
    """(15 header words, name pointer, data pointer, end guard, name, data,
    final guard) from the entire form of the given header length."""
    words = _ABI_HEADERS[header_len].unpack_from(buf)
    n, d = words[13], words[14]
    pn = calc_padded_name_len(n)
    pd = calc_padded_data_len(d)
    name = bytes(buf[header_len:header_len + n])
    data = bytes(buf[header_len + pn:header_len + pn + d])
    final = _U32.unpack_from(buf, header_len + pn + pd)[0]
    return words[:15], words[15], words[16], words[17], name, data, final


# ---------------------------------------------------------------------------
# Messages

def _check_name(name_b, name):
    if not name_b.startswith(b'$.'):
        raise ValueError('Message name "%s" does not start "$."' % (name,))
    if len(name_b) < 3:
        raise ValueError('Message name "%s" is too short' % (name,))


_ALL_KEYWORDS = ('data', 'to', 'from_', 'orig_from', 'final_to',
                 'in_reply_to', 'flags', 'id')


class Message(object):
    """A KBUS message.

    ``Message(name, data=None, to=None, from_=None, orig_from=None,
    final_to=None, in_reply_to=None, flags=None, id=None,
    encoding='utf-8', errors='strict')``

    ``name`` must start ``$.`` and be at least 3 bytes long. ``data`` may be
    None, a str (encoded with ``encoding``/``errors``) or bytes; empty data
    means no data. Use ``from_message``, ``from_sequence`` and ``from_bytes``
    to build a message from another one, from the tuple of ``extract()`` or
    from the bytes of an entire message.
    """

    START_GUARD = _START_GUARD
    END_GUARD = _END_GUARD

    WANT_A_REPLY = _BIT_WANT_A_REPLY
    WANT_YOU_TO_REPLY = _BIT_WANT_YOU_TO_REPLY
    SYNTHETIC = _BIT_SYNTHETIC
    URGENT = _BIT_URGENT
    ALL_OR_WAIT = _BIT_ALL_OR_WAIT
    ALL_OR_FAIL = _BIT_ALL_OR_FAIL

    # The keyword arguments the constructor (and so from_message and
    # from_sequence overrides) accept, and the repr keyword parts.
    _keywords = _ALL_KEYWORDS
    _repr_parts = ('data', 'to', 'from_', 'orig_from', 'final_to',
                   'in_reply_to', 'flags', 'id')

    def __init__(self, name, data=None, to=None, from_=None, orig_from=None,
                 final_to=None, in_reply_to=None, flags=None, id=None,
                 encoding='utf-8', errors='strict'):
        name_b = _name_to_bytes(name)
        _check_name(name_b, name)
        self._set_pointy(name_b, _data_to_bytes(data, encoding, errors),
                         id, in_reply_to, to, from_, orig_from, final_to,
                         flags)
        self._fixup()

    # -- construction helpers

    def _set_pointy(self, name_b, data_b, id, in_reply_to, to, from_,
                    orig_from, final_to, flags):
        hdr = _pointy_header(name_b, data_b, id, in_reply_to, to, from_,
                             orig_from, final_to, flags)
        self.msg = hdr
        self._hdr = hdr
        self._name = name_b
        self._data = data_b

    def _fixup(self):
        """Enforce the rules of the class (overridden by the subclasses)."""

    @classmethod
    def _from_fields(cls, fields, overrides):
        """A new instance from a dict of fields and (non-None) overrides."""
        for key, value in overrides.items():
            if key in ('encoding', 'errors'):
                continue
            if key not in cls._keywords:
                raise TypeError('%s() got an unexpected keyword argument %r'
                                % (cls.__name__, key))
            if value is not None:
                fields[key] = value
        name_b = fields['name']
        if not isinstance(name_b, bytes):
            name_b = _name_to_bytes(name_b)
        _check_name(name_b, fields['name'])
        self = cls.__new__(cls)
        self._set_pointy(name_b,
                         _data_to_bytes(fields['data'],
                                        overrides.get('encoding', 'utf-8'),
                                        overrides.get('errors', 'strict')),
                         fields['id'], fields['in_reply_to'], fields['to'],
                         fields['from_'], fields['orig_from'],
                         fields['final_to'], fields['flags'])
        self._fixup()
        return self

    def _fields(self):
        h = self._hdr
        return {'name': self._name, 'data': self._data,
                'id': (h.id.network_id, h.id.serial_num),
                'in_reply_to': (h.in_reply_to.network_id,
                                h.in_reply_to.serial_num),
                'to': h.to, 'from_': h.from_,
                'orig_from': (h.orig_from.network_id, h.orig_from.local_id),
                'final_to': (h.final_to.network_id, h.final_to.local_id),
                'flags': h.flags}

    @classmethod
    def from_message(cls, msg, **overrides):
        """A copy of ``msg`` (any Message) as this class, with the non-None
        keyword ``overrides`` replacing its values. The name cannot be
        overridden."""
        return cls._from_fields(msg._fields(), overrides)

    @classmethod
    def from_sequence(cls, seq, **overrides):
        """A message of this class from the 9-tuple returned by
        ``extract()``: (id, in_reply_to, to, from_, orig_from, final_to,
        flags, name, data)."""
        if len(seq) != 9:
            raise ValueError('Message sequence must have 9 items, not %d: %r'
                             % (len(seq), seq))
        (id, in_reply_to, to, from_, orig_from, final_to, flags, name,
         data) = seq
        fields = {'id': id, 'in_reply_to': in_reply_to, 'to': to,
                  'from_': from_, 'orig_from': orig_from,
                  'final_to': final_to, 'flags': flags, 'name': name,
                  'data': data}
        return cls._from_fields(fields, overrides)

    @classmethod
    def from_bytes(cls, data):
        """A message of this class from the bytes of an entire message (as
        read from KBUS)."""
        self = cls.__new__(cls)
        self._set_entire(data)
        self._fixup()
        return self

    def _set_entire(self, data):
        n = len(data)
        if n < MSG_HEADER_LEN:
            raise ValueError('Cannot form entire message from string "%s" of '
                             'length %d' % (hexdata(data), n))
        hdr = _MessageHeaderStruct.from_buffer_copy(data)
        if hdr.start_guard != _START_GUARD:
            raise ValueError('Message start guard is %08x, not %08x'
                             % (hdr.start_guard, _START_GUARD))
        if hdr.end_guard != _END_GUARD:
            raise ValueError('Message header end guard is %08x, not %08x'
                             % (hdr.end_guard, _END_GUARD))
        name_len = hdr.name_len
        data_len = hdr.data_len
        if name_len == 0:
            raise ValueError('Message name length is 0')
        pn = 4 * ((name_len + 4) // 4)
        total = MSG_HEADER_LEN + pn + 4 * ((data_len + 3) // 4) + 4
        if n < total:
            raise ValueError('Cannot form entire message from string "%s" of '
                             'length %d (need %d bytes)'
                             % (hexdata(data), n, total))
        cls = _entire_classes.get((pn, total - MSG_HEADER_LEN - pn - 4))
        if cls is None:
            cls = _entire_message_struct_class(name_len, data_len)
        ent = cls.from_buffer_copy(data)
        if ent._end_guard != _END_GUARD:
            raise ValueError('Message final end guard is %08x, not %08x'
                             % (ent._end_guard, _END_GUARD))
        self.msg = ent
        self._hdr = ent.header
        self._name = bytes(data[MSG_HEADER_LEN:MSG_HEADER_LEN + name_len])
        if data_len:
            start = MSG_HEADER_LEN + pn
            self._data = bytes(data[start:start + data_len])
        else:
            self._data = None

    # -- fields

    @property
    def id(self):
        """The message id (a MessageId), or None if it is [0:0]."""
        i = self._hdr.id
        n, s = i.network_id, i.serial_num
        if n == 0 and s == 0:
            return None
        return MessageId(n, s)

    @property
    def _id(self):
        return self._hdr.id

    @property
    def in_reply_to(self):
        """The id this message replies to, or None."""
        i = self._hdr.in_reply_to
        n, s = i.network_id, i.serial_num
        if n == 0 and s == 0:
            return None
        return MessageId(n, s)

    @property
    def _in_reply_to(self):
        return self._hdr.in_reply_to

    @property
    def orig_from(self):
        """OrigFrom, or None if (0,0)."""
        o = self._hdr.orig_from
        n, l = o.network_id, o.local_id
        if n == 0 and l == 0:
            return None
        return OrigFrom(n, l)

    @property
    def _orig_from(self):
        return self._hdr.orig_from

    @property
    def final_to(self):
        """OrigFrom, or None if (0,0)."""
        o = self._hdr.final_to
        n, l = o.network_id, o.local_id
        if n == 0 and l == 0:
            return None
        return OrigFrom(n, l)

    @property
    def _final_to(self):
        return self._hdr.final_to

    @property
    def to(self):
        return self._hdr.to

    @property
    def from_(self):
        return self._hdr.from_

    @property
    def flags(self):
        return self._hdr.flags

    @property
    def name(self):
        """The message name, as a str."""
        return self._name.decode('utf-8', 'backslashreplace')

    @property
    def data(self):
        """The message data (bytes), or None if there is none."""
        return self._data

    def extract(self):
        """(id, in_reply_to, to, from_, orig_from, final_to, flags, name,
        data)"""
        return (self.id, self.in_reply_to, self.to, self.from_,
                self.orig_from, self.final_to, self.flags, self.name,
                self.data)

    def is_entire(self):
        """True if ``msg`` is an entire message rather than a pointy header."""
        return not isinstance(self.msg, _MessageHeaderStruct)

    def total_length(self):
        """The length of the entire form of this message (ENTIRE_LEN)."""
        h = self._hdr
        return calc_entire_message_len(h.name_len, h.data_len)

    def to_bytes(self):
        """The entire form of this message, as bytes."""
        if self.msg is not self._hdr:
            return bytes(self.msg)
        return _entire_bytes(self._hdr, self._name, self._data)

    def _pointy_bytes(self):
        """A pointy header for this message (pointers non-zero as needed)."""
        h = self._hdr
        if self.msg is h:
            return bytes(h)
        b = bytearray(bytes(h))
        off = _NAME_PTR_OFF
        b[off] = 1
        if h.data_len:
            b[off + _PTR_SIZE] = 2
        return bytes(b)

    # -- comparisons

    def equivalent(self, other):
        """True if ``to``, name and data are the same (ignoring id, flags,
        in_reply_to, from_, orig_from and final_to)."""
        try:
            return (self._hdr.to == other._hdr.to and
                    self._name == other._name and self._data == other._data)
        except AttributeError:
            return False

    def __eq__(self, other):
        if not isinstance(other, Message):
            return False
        a = bytes(self._hdr)
        b = bytes(other._hdr)
        return (a[:_EXTRA_OFF] == b[:_EXTRA_OFF] and
                a[_FLAGS_OFF:_PAD_OFF] == b[_FLAGS_OFF:_PAD_OFF] and
                a[_END_GUARD_OFF:_END_GUARD_OFF + 4] ==
                b[_END_GUARD_OFF:_END_GUARD_OFF + 4] and
                self._name == other._name and self._data == other._data)

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = None

    # -- flags

    def set_want_reply(self, value=True):
        """Set (or clear) the WANT_A_REPLY flag."""
        if value:
            self._hdr.flags |= _BIT_WANT_A_REPLY
        else:
            self._hdr.flags &= ~_BIT_WANT_A_REPLY & 0xFFFFFFFF

    def set_urgent(self, value=True):
        """Set (or clear) the URGENT flag."""
        if value:
            self._hdr.flags |= _BIT_URGENT
        else:
            self._hdr.flags &= ~_BIT_URGENT & 0xFFFFFFFF

    def wants_us_to_reply(self):
        """True if WANT_YOU_TO_REPLY is set: we must reply to it."""
        return bool(self._hdr.flags & _BIT_WANT_YOU_TO_REPLY)

    def is_synthetic(self):
        """True if KBUS generated this message (SYNTHETIC set)."""
        return bool(self._hdr.flags & _BIT_SYNTHETIC)

    def is_urgent(self):
        return bool(self._hdr.flags & _BIT_URGENT)

    def is_reply(self):
        """True if ``in_reply_to`` is set."""
        i = self._hdr.in_reply_to
        return i.network_id != 0 or i.serial_num != 0

    def is_request(self):
        """True if WANT_A_REPLY is set."""
        return bool(self._hdr.flags & _BIT_WANT_A_REPLY)

    def is_stateful_request(self):
        """True if WANT_A_REPLY is set and ``to`` is not 0."""
        h = self._hdr
        return bool(h.flags & _BIT_WANT_A_REPLY) and h.to != 0

    def cast(self):
        """A copy of this message as a Status, Reply, Request or
        Announcement, as appropriate."""
        if self.is_reply():
            if self._name.startswith(b'$.KBUS.'):
                cls = Status
            else:
                cls = Reply
        elif self.is_request():
            cls = Request
        else:
            cls = Announcement
        new = cls.__new__(cls)
        f = self._fields()
        new._set_pointy(f['name'], f['data'], f['id'], f['in_reply_to'],
                        f['to'], f['from_'], f['orig_from'], f['final_to'],
                        f['flags'])
        new._fixup()
        return new

    # -- text

    def _kind(self):
        if self.is_reply():
            if self._name.startswith(b'$.KBUS.'):
                return 'Status'
            return 'Reply'
        if self._name == _BIND_EVENT_NAME_B:
            return 'ReplierBindEvent'
        if self.is_request():
            return 'Request'
        return 'Announcement'

    def __str__(self):
        h = self._hdr
        kind = self._kind()
        parts = []
        if kind != 'ReplierBindEvent':
            parts.append(repr(self.name))
        i = h.id
        if i.network_id or i.serial_num:
            parts.append('id=[%u:%u]' % (i.network_id, i.serial_num))
        if h.to:
            parts.append('to=%u' % h.to)
        if h.from_:
            parts.append('from=%u' % h.from_)
        o = h.orig_from
        if o.network_id or o.local_id:
            parts.append('orig_from=(%u,%u)' % (o.network_id, o.local_id))
        o = h.final_to
        if o.network_id or o.local_id:
            parts.append('final_to=(%u,%u)' % (o.network_id, o.local_id))
        i = h.in_reply_to
        if i.network_id or i.serial_num:
            parts.append('in_reply_to=[%u:%u]' % (i.network_id, i.serial_num))
        flags = h.flags
        if flags:
            names = [mn for bit, mn in _FLAG_MNEMONICS if flags & bit]
            if names:
                parts.append('flags=0x%x (%s)' % (flags, ','.join(names)))
            else:
                parts.append('flags=0x%x' % flags)
        if self._data is not None:
            if kind == 'ReplierBindEvent':
                try:
                    is_bind, binder, name = split_replier_bind_event_data(
                        self._data)
                    parts.append('[%s \'%s\' for %u]'
                                 % ('Bind' if is_bind else 'Unbind', name,
                                    binder))
                except (ValueError, struct.error):
                    parts.append('data=%r' % (self._data,))
            else:
                parts.append('data=%r' % (self._data,))
        return '<%s %s>' % (kind, ', '.join(parts))

    def __repr__(self):
        h = self._hdr
        parts = [repr(self.name)]
        for what in self._repr_parts:
            if what == 'data':
                if self._data is not None:
                    parts.append('data=%r' % (self._data,))
            elif what == 'flags':
                if h.flags:
                    parts.append('flags=0x%08x' % h.flags)
            elif what in ('to', 'from_'):
                value = getattr(h, what)
                if value:
                    parts.append('%s=%u' % (what, value))
            else:
                value = getattr(self, what)
                if value is not None:
                    parts.append('%s=%r' % (what, value))
        return '%s(%s)' % (self.__class__.__name__, ', '.join(parts))


class Announcement(Message):
    """An Announcement: a message that is neither a Request nor a Reply.

    ``Announcement(name, data=None, to=None, from_=None, flags=None,
    id=None, encoding='utf-8', errors='strict')``. ``in_reply_to``,
    ``orig_from`` and ``final_to`` are always zero.
    """

    _keywords = ('data', 'to', 'from_', 'flags', 'id')
    _repr_parts = ('data', 'to', 'from_', 'flags', 'id')

    def __init__(self, name, data=None, to=None, from_=None, flags=None,
                 id=None, encoding='utf-8', errors='strict'):
        Message.__init__(self, name, data=data, to=to, from_=from_,
                         flags=flags, id=id, encoding=encoding, errors=errors)

    def _fixup(self):
        h = self._hdr
        h.in_reply_to.network_id = 0
        h.in_reply_to.serial_num = 0
        h.orig_from.network_id = 0
        h.orig_from.local_id = 0
        h.final_to.network_id = 0
        h.final_to.local_id = 0

    def set_want_reply(self, value=True):
        raise TypeError('Announcements are not Requests')


class Request(Message):
    """A Request: a message with WANT_A_REPLY set (always).

    ``Request(name, data=None, to=None, from_=None, final_to=None,
    flags=None, id=None, encoding='utf-8', errors='strict')``. With ``to``
    (the replier's Ksock id) it is a Stateful Request.
    """

    _keywords = ('data', 'to', 'from_', 'final_to', 'flags', 'id')
    _repr_parts = ('data', 'to', 'from_', 'orig_from', 'final_to', 'flags',
                   'id')

    def __init__(self, name, data=None, to=None, from_=None, final_to=None,
                 flags=None, id=None, encoding='utf-8', errors='strict'):
        Message.__init__(self, name, data=data, to=to, from_=from_,
                         final_to=final_to, flags=flags, id=id,
                         encoding=encoding, errors=errors)

    def _fixup(self):
        self._hdr.flags |= _BIT_WANT_A_REPLY

    def set_want_reply(self, value=True):
        raise TypeError('Requests always want a reply')


class Reply(Message):
    """A Reply: a message with ``in_reply_to`` set (which is required).

    ``Reply(name, data=None, to=None, from_=None, orig_from=None,
    in_reply_to=None, flags=None, id=None, encoding='utf-8',
    errors='strict')``. Use ``reply_to()`` to build the Reply to a Request.
    """

    _keywords = ('data', 'to', 'from_', 'orig_from', 'in_reply_to', 'flags',
                 'id')
    _repr_parts = ('data', 'to', 'from_', 'orig_from', 'in_reply_to',
                   'flags', 'id')

    def __init__(self, name, data=None, to=None, from_=None, orig_from=None,
                 in_reply_to=None, flags=None, id=None, encoding='utf-8',
                 errors='strict'):
        Message.__init__(self, name, data=data, to=to, from_=from_,
                         orig_from=orig_from, in_reply_to=in_reply_to,
                         flags=flags, id=id, encoding=encoding, errors=errors)

    def _fixup(self):
        if not self.is_reply():
            raise ValueError('A Reply must specify in_reply_to')


class Status(Reply):
    """A Status: a Reply generated by KBUS itself (name ``$.KBUS.*``).

    Cannot be constructed directly: use ``Status.from_bytes()`` (or
    ``cast()`` a message read from KBUS).
    """

    _keywords = ('data', 'to', 'from_', 'in_reply_to', 'flags', 'id')
    _repr_parts = ('data', 'to', 'from_', 'in_reply_to', 'flags', 'id')

    def __init__(self, *args, **kwargs):
        raise NotImplementedError('Status messages cannot be constructed '
                                  'directly: use Status.from_bytes()')

    @classmethod
    def from_message(cls, msg, **overrides):
        raise NotImplementedError('Status.from_message() is not supported')

    @classmethod
    def from_sequence(cls, seq, **overrides):
        raise NotImplementedError('Status.from_sequence() is not supported')


def _message_from_entire(data):
    """A plain Message from the bytes of an entire message (fast path)."""
    self = Message.__new__(Message)
    self._set_entire(data)
    return self


# ---------------------------------------------------------------------------
# Helpers

def reply_to(original, data=None, flags=0):
    """The Reply to ``original``, which must be a Request that we are to
    answer (WANT_A_REPLY and WANT_YOU_TO_REPLY set). The Reply gets the
    original's name, ``in_reply_to`` = its id and ``to`` = its sender; the
    original's data and flags are not copied."""
    h = original._hdr
    f = h.flags
    if not (f & _BIT_WANT_A_REPLY and f & _BIT_WANT_YOU_TO_REPLY):
        raise ValueError('Cannot form a reply to a message that does not have '
                         'WANT_A_REPLY and WANT_YOU_TO_REPLY set: %s'
                         % (original,))
    # Reply(original.name, data=data, in_reply_to=original.id,
    #       to=original.from_, flags=flags), without the detours
    i = h.id
    reply = Reply.__new__(Reply)
    reply._set_pointy(original._name, _data_to_bytes(data), None,
                      (i.network_id, i.serial_num), h.from_, None, None, None,
                      flags)
    reply._fixup()
    return reply


def stateful_request(earlier_msg, name, data=None, from_=None, flags=None,
                     id=None):
    """A Stateful Request to the replier that sent ``earlier_msg`` (a Reply:
    ``to`` = its sender, ``final_to`` = its ``orig_from``), or to the same
    replier as ``earlier_msg`` (a Stateful Request: its ``to`` and
    ``final_to`` are copied)."""
    if earlier_msg.is_reply():
        to = earlier_msg.from_
        final_to = earlier_msg.orig_from
    elif earlier_msg.is_stateful_request():
        to = earlier_msg.to
        final_to = earlier_msg.final_to
    else:
        raise ValueError('The first argument of stateful_request() must be a '
                         'Reply or a previous Stateful Request')
    return Request(name, data=data, to=to, from_=from_, final_to=final_to,
                   flags=flags, id=id)


def split_replier_bind_event_data(data):
    """(is_bind, binder, name) from the data of a ``$.KBUS.ReplierBindEvent``
    (spec 3.6). ``is_bind`` is 1 for a bind, 0 for an unbind."""
    hdr = _struct_from_bytes(_ReplierBindEventHeader, data)
    start = ctypes.sizeof(_ReplierBindEventHeader)
    name = bytes(data[start:start + hdr.name_len])
    if len(name) != hdr.name_len:
        raise ValueError('ReplierBindEvent data too short for a name of '
                         'length %d' % hdr.name_len)
    return (hdr.is_bind, hdr.binder, name.decode('utf-8', 'backslashreplace'))


def read_bindings(names=None, bus=0, ksock=None):
    """The bindings report (the original ``/proc/kbus/bindings``), as a list
    of ``(id_or_name, is_replier, message_name)`` for every binding of every
    bus. ``id_or_name`` is ``names[ksock_id]`` if ``names`` (a dict) has that
    id, else the id. The report is asked for through ``ksock`` if given,
    else through a read-only Ksock opened (and closed) on bus ``bus``."""
    from kbus.ksock import Ksock
    if names is None:
        names = {}
    if ksock is None:
        with Ksock(bus, 'r') as k:
            text = k._bindings_report()
    else:
        text = ksock._bindings_report()
    bindings = []
    for line in text.splitlines():
        if not line.strip() or line.startswith('#'):
            continue
        bits = line.split()
        ksock_id = int(bits[1])
        if bits[3] == 'R':
            is_replier = True
        elif bits[3] == 'L':
            is_replier = False
        else:
            raise ValueError('Unexpected value for is_replier: %s' % bits[3])
        name = bits[4]
        bindings.append((names.get(ksock_id, ksock_id), is_replier, name))
    return bindings
