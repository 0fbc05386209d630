#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/<target>/ (docs/reliability.md §2).

Deterministic: run it again and the same files come out. Seeds are built
from the protocol byte vectors (tests/vectors/protocol.json) and the names
of KBUS-SPEC.md §2; the fuzzers grow their own corpora from these.
"""
import hashlib
import json
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, '..', 'tests', 'vectors', 'protocol.json')


def write(target, data):
    d = os.path.join(HERE, 'corpus', target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def frame(op, payload=b''):
    return struct.pack('<II', 4 + len(payload), op) + payload


def main():
    vectors = {v['name']: v for v in json.load(open(VECTORS))['vectors']}
    blob = {n: bytes.fromhex(v['hex']) for n, v in vectors.items()}

    # fuzz_frames: [piece size] + stream
    hello = frame(64, struct.pack('<III', 1, 3, 88))
    frames = [b for n, b in blob.items() if n.startswith('frame_')]
    for piece in (0, 3, 255):
        for f in frames:
            write('fuzz_frames', bytes([piece]) + hello + f)
        write('fuzz_frames', bytes([piece]) + hello + b''.join(frames))
    write('fuzz_frames', b'\x07' + struct.pack('<II', 0x7FFFFFFF, 65))   # impossible length
    write('fuzz_frames', b'\x01' + struct.pack('<II', 100, 64))          # too long before HELLO
    write('fuzz_frames', b'\x01' + hello + struct.pack('<I', 2))         # length < 4

    # fuzz_message: [abi | piece << 1] + message bytes
    for n, b in blob.items():
        if n.startswith('entire_') or n.startswith('pointy_'):
            abi = 1 if n.endswith('h72') else 0
            for piece in (0, 5, 127):
                write('fuzz_message', bytes([abi | piece << 1]) + b)
    write('fuzz_message', b'\x00' + blob['replier_bind_event_data'])
    bad = bytearray(blob['entire_fred_dada_h88'])
    bad[-1] ^= 0xFF   # a broken final guard
    write('fuzz_message', b'\x00' + bytes(bad))

    # fuzz_names: NUL-separated: a message name, then bindings
    names = ['$.a', '$.*', '$.%', '$.Fred', '$.Fred.Jim', '$.Fred.Jim.Bob', '$.Fred.*', '$.Fred.%',
             '$.Sensors.Kitchen.Temperature', '$.Sensors.*', '$.Sensors.%', '$.', '$', '$x', 'Fred',
             '$.Fred.', '$.Fred..Jim', '$.Fred*', '$.*.Fred', '$.Fred.**', '$..*', '$.KBUS.ReplierBindEvent',
             '$.caf\xe9']
    rng = random.Random(1)
    for n in names:
        write('fuzz_names', n.encode('latin-1'))
    for _ in range(20):
        toks = [rng.choice(names) for _ in range(rng.randint(2, 8))]
        toks.insert(rng.randint(1, len(toks)), '')
        write('fuzz_names', '\0'.join(toks).encode('latin-1'))

    # fuzz_bus: operation sequences (any bytes are one)
    for i in range(12):
        rng = random.Random(100 + i)
        write('fuzz_bus', bytes(rng.getrandbits(8) for _ in range(rng.randint(100, 3000))))
    # ... and one that spells out opens, binds, requests, reads and replies
    write('fuzz_bus', bytes([3]) + bytes([0, 0, 2, 1, 1, 2, 0, 0, 4, 0, 0, 0, 1, 0, 6, 0, 8, 0, 0, 0,
                                          6, 0, 1, 0, 1, 6, 1] * 20))


if __name__ == '__main__':
    main()
