#!/usr/bin/env python3
"""kbus through the Python client (python/kbus), against a kbusd that
bench/run.py started. Prints RESULT lines as the C++ benchmarks do.

    kbus_py.py rtt  --dir D [--payload B] [--iterations N] --calls generic|request
        generic: send_msg() then wait_for_msg() (the replier: wait_for_msg()
        then send_msg()); request: Ksock.request() against the same replier.
    kbus_py.py tput --dir D [--listeners L] [--payload B] [--messages M] [--batch B]
        announcements 1 sender -> L listeners; --batch 1: send_msg() and
        wait_for_msg(); else send_msgs() of B messages and wait_for_msgs().
        ALL_OR_WAIT sends and raised listener queues: nothing may be lost.
"""

import argparse
import errno
import os
import select
import signal
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'python'))

from kbus import Announcement, Ksock, Message, Request, reply_to  # noqa: E402
from bench_py import emit, time_round_trips  # noqa: E402

WARMUP = (1 << 64) - 1
END = (1 << 64) - 2
SEQ = struct.Struct('<Q')


def replier(ready_w):
    k = Ksock(0)
    k.bind('$.Bench.Echo', True)
    os.write(ready_w, b'r')
    while True:
        m = k.wait_for_msg()
        if m is not None:
            k.send_msg(reply_to(m, m.data))


def rtt(args):
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            replier(ready_w)
        finally:
            os._exit(0)
    os.read(ready_r, 1)
    k = Ksock(0)
    req = Request('$.Bench.Echo', b'x' * args.payload)
    fast = args.calls == 'request'

    def once():
        if fast:
            k.request(req)
            return
        mid = k.send_msg(req)
        while True:
            m = k.wait_for_msg()
            if m is not None and m.in_reply_to == mid:
                return

    stats = time_round_trips(args.iterations, once)
    k.close()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    emit(system='kbus Python request()' if fast else 'kbus Python send+wait+read',
         test='round trip', payload=args.payload, **stats)


def listener(args, ready_w, result_w):
    k = Ksock(0)
    k.set_max_messages(100000)
    k.bind('$.Bench.Tick')
    os.write(ready_w, b'r')
    received = 0
    last = 0
    idle = 3.0
    going = True
    while going:
        if args.batch == 1:
            m = k.wait_for_msg(idle)
            msgs = [] if m is None else [m]
        else:
            msgs = k.wait_for_msgs(1024, idle)
        if not msgs:
            break
        for m in msgs:
            s = SEQ.unpack_from(m.data)[0]
            if s == END:
                going = False
                break
            if s == WARMUP:
                continue
            received += 1
            last = time.monotonic_ns()
            if received >= args.messages:
                going = False
                break
    os.write(result_w, struct.pack('<QQ', received, last))
    k.close()


def tput(args):
    ready_r, ready_w = os.pipe()
    result_r, result_w = os.pipe()
    kids = []
    for _ in range(args.listeners):
        pid = os.fork()
        if pid == 0:
            try:
                listener(args, ready_w, result_w)
            finally:
                os._exit(0)
        kids.append(pid)
    for _ in range(args.listeners):
        os.read(ready_r, 1)
    k = Ksock(0)
    pad = b'x' * (args.payload - 8)
    waits = 0

    def msg(seq):
        return Announcement('$.Bench.Tick', SEQ.pack(seq) + pad,
                            flags=Message.ALL_OR_WAIT)

    def wait_writable():
        select.select([], [k.fileno()], [])

    def send(msgs):
        nonlocal waits
        while msgs:
            try:
                if len(msgs) == 1:
                    k.send_msg(msgs[0])
                    return
                k.send_msgs(msgs)
                return
            except OSError as e:
                if e.errno != errno.EAGAIN:
                    raise
                waits += 1
                done = len(getattr(e, 'ids', [])) if len(msgs) > 1 else 1
                wait_writable()
                msgs = msgs[done:]

    t0 = time.monotonic_ns()
    batch = []
    for i in range(args.messages):
        batch.append(msg(i))
        if len(batch) >= args.batch:
            send(batch)
            batch = []
    batch.append(msg(END))
    send(batch)
    received = 0
    t_last = t0
    for _ in range(args.listeners):
        got, last = struct.unpack('<QQ', os.read(result_r, 16))
        received += got
        t_last = max(t_last, last)
    for pid in kids:
        os.waitpid(pid, 0)
    k.close()
    secs = (t_last - t0) / 1e9
    emit(system='kbus Python',
         test='fan-out, batch calls' if args.batch > 1 else 'fan-out, one per call',
         payload=args.payload, listeners=args.listeners, sent=args.messages,
         lost=args.messages * args.listeners - received,
         rate=received / args.listeners / secs if secs > 0 else 0,
         note='a full queue made the sender wait %dx (ALL_OR_WAIT)' % waits
         if waits else '')


def main():
    p = argparse.ArgumentParser()
    p.add_argument('cmd', choices=['rtt', 'tput'])
    p.add_argument('--dir', required=True)
    p.add_argument('--payload', type=int, default=64)
    p.add_argument('--iterations', type=int, default=20000)
    p.add_argument('--calls', choices=['generic', 'request'], default='generic')
    p.add_argument('--listeners', type=int, default=1)
    p.add_argument('--messages', type=int, default=20000)
    p.add_argument('--batch', type=int, default=1)
    args = p.parse_args()
    args.payload = max(8, args.payload)
    os.environ['KBUS_DIR'] = args.dir
    rtt(args) if args.cmd == 'rtt' else tput(args)


if __name__ == '__main__':
    main()
