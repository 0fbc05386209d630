#!/usr/bin/env python3
"""Generate tests/vectors/protocol.json from the rules of KBUS-SPEC.md §3 and
docs/protocol.md, independently of the C++ and Python codecs that are tested
against it. Run: python3 scripts/make_vectors.py > tests/vectors/protocol.json
"""
import json
import struct

START, END = 0x7375624B, 0x4B627573


def padded_name(n):
    return 4 * ((n + 1 + 3) // 4)


def padded_data(d):
    return 4 * ((d + 3) // 4)


def header(h, *, id=(0, 0), in_reply_to=(0, 0), to=0, from_=0,
           orig_from=(0, 0), final_to=(0, 0), flags=0, name_len=0, data_len=0,
           name_ptr=0, data_ptr=0):
    words = struct.pack('<15I', START, id[0], id[1], in_reply_to[0],
                        in_reply_to[1], to, from_, orig_from[0], orig_from[1],
                        final_to[0], final_to[1], 0, flags, name_len, data_len)
    if h == 88:
        return words + b'\0' * 4 + struct.pack('<QQI', name_ptr, data_ptr, END) + b'\0' * 4
    return words + struct.pack('<III', name_ptr, data_ptr, END)


def entire(h, name, data=b'', **kw):
    hdr = header(h, name_len=len(name), data_len=len(data), **kw)
    body = name + b'\0' * (padded_name(len(name)) - len(name))
    body += data + b'\0' * (padded_data(len(data)) - len(data))
    return hdr + body + struct.pack('<I', END)


def req(op, payload=b''):
    return struct.pack('<II', 4 + len(payload), op) + payload


def rep(status, payload=b''):
    return struct.pack('<Ii', 4 + len(payload), status) + payload


vectors = []


def add(name, desc, data, **extra):
    v = {'name': name, 'description': desc, 'hex': data.hex()}
    v.update(extra)
    vectors.append(v)


for h in (88, 72):
    add(f'entire_fred_nodata_h{h}', f"'$.Fred', no data, H={h}",
        entire(h, b'$.Fred'), header_len=h, entire_len=100 if h == 88 else 84)
    add(f'entire_fred_dada_h{h}', f"'$.Fred', data 'dada', H={h}",
        entire(h, b'$.Fred', b'dada'), header_len=h, entire_len=104 if h == 88 else 88)
    add(f'entire_fred_7_h{h}', f"'$.Fred', data '1234567', H={h}",
        entire(h, b'$.Fred', b'1234567'), header_len=h, entire_len=108 if h == 88 else 92)
    add(f'entire_request_h{h}',
        f"Request '$.Actor.Ask.Guildenstern' id=[0:342] from=113 flags=0x3 data 'Were you speaking to me?', H={h}",
        entire(h, b'$.Actor.Ask.Guildenstern', b'Were you speaking to me?', id=(0, 342),
               from_=113, flags=3), header_len=h)
    add(f'entire_reply_h{h}',
        f"Reply '$.Actor.Ask.Guildenstern' id=[0:343] to=113 from=115 in_reply_to=[0:342] orig_from=(7,9) final_to=(8,10) data 'Yes, yes I was', H={h}",
        entire(h, b'$.Actor.Ask.Guildenstern', b'Yes, yes I was', id=(0, 343),
               in_reply_to=(0, 342), to=113, from_=115, orig_from=(7, 9),
               final_to=(8, 10)), header_len=h)
    add(f'pointy_header_h{h}', f"pointy header for '$.Fred' + 4 data bytes (pointers 1 and 2), H={h}",
        header(h, name_len=6, data_len=4, name_ptr=1, data_ptr=2), header_len=h)

add('replier_bind_event_data', "ReplierBindEvent data: bind, binder 3, '$.Fred' (spec 3.6)",
    struct.pack('<III', 1, 3, 6) + b'$.Fred\0\0')

add('frame_hello', 'HELLO version 1, mode rw (3) + poll fd on request (4), H=88',
    req(64, struct.pack('<III', 1, 7, 88)))
add('frame_hello_reply', 'HELLO reply: ksock id 1, bus 0 (no poll fd: mode bit 4 was set)',
    rep(0, struct.pack('<II', 1, 0)))
add('frame_pollfd', 'POLLFD', req(76))
add('frame_pollfd_reply', 'POLLFD reply (the poll fd travels as SCM_RIGHTS on these bytes)', rep(0))
add('frame_bind_replier', "BIND as replier to '$.Fred'", req(2, struct.pack('<II', 1, 6) + b'$.Fred'))
add('frame_unbind_listener', "UNBIND listener '$.Fred.*'", req(3, struct.pack('<II', 0, 8) + b'$.Fred.*'))
add('frame_replier_query', "REPLIER '$.Fred'", req(5, struct.pack('<I', 6) + b'$.Fred'))
add('frame_replier_reply', 'REPLIER reply: found, ksock 3', rep(1, struct.pack('<I', 3)))
add('frame_error_ebadmsg', 'reply: -EBADMSG (74), no payload', rep(-74))
add('frame_nextmsg', 'NEXTMSG', req(6))
add('frame_nextmsg_reply', 'NEXTMSG reply: a message of 100 bytes made current', rep(1, struct.pack('<I', 100)))
add('frame_send_empty', 'SEND (entire form already written)', req(8))
add('frame_send_pointy', "SEND with pointy payload: name '$.Fred', data 'dada'", req(8, b'$.Fred' + b'dada'))
add('frame_send_reply', 'SEND reply: id [0:5]', rep(0, struct.pack('<II', 0, 5)))
add('frame_send_eagain', 'SEND reply: -EAGAIN (11) with assigned id [0:6]', rep(-11, struct.pack('<II', 0, 6)))
add('frame_maxmsgs', 'MAXMSGS set 10', req(11, struct.pack('<I', 10)))
add('frame_onlyonce_query', 'MSGONLYONCE query', req(14, struct.pack('<I', 0xFFFFFFFF)))
add('frame_write', 'WRITE of the entire $.Fred/dada message, H=88', req(65, entire(88, b'$.Fred', b'dada')))
add('frame_read', 'READ up to 4096 bytes', req(66, struct.pack('<I', 4096)))
add('frame_sendmsg', "SENDMSG of '$.Fred' no data, H=88", req(67, entire(88, b'$.Fred')))
add('frame_nextread_reply', "NEXTREAD reply: Announcement '$.Fred' data 'dada' id [0:5] from 3, H=88",
    rep(1, entire(88, b'$.Fred', b'dada', id=(0, 5), from_=3)))
add('frame_waitread', 'WAITREAD', req(69))
add('frame_reset', 'RESET (no-op; also cancels a WAITREAD)', req(1))
add('frame_unknown_reply', 'reply to an unknown op: -ENOTTY (25)', rep(-25))
add('frame_monitor_on', 'MONITOR on (docs/decisions.md D25)', req(77, struct.pack('<I', 1)))
add('frame_monitor_reply', 'MONITOR reply: 3 copies missed since the last MONITOR', rep(0, struct.pack('<I', 3)))

print(json.dumps({'byte_order': 'little-endian', 'vectors': vectors}, indent=1))
