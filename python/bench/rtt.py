#!/usr/bin/env python3
"""Python request/reply round trip through kbusd: the same loop as
bench/rtt.cpp (kbus_bench_rtt), written with the Python client.

    python3 python/bench/rtt.py [--iterations N] [--payload BYTES] [--pin]
                                [--kbusd PATH]

Starts its own kbusd (--kbusd, else $KBUSD, else <repo>/build/kbusd), forks
a replier that answers '$.Bench.Echo' Requests with their data, and times
send_msg() + wait_for_msg() in the requester. Prints p50/p99/mean in us.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from kbus import Ksock, Request, reply_to  # noqa: E402


def pin(enabled):
    if enabled:
        os.sched_setaffinity(0, {0})


def replier(ready_w, pinned):
    pin(pinned)
    k = Ksock(0)
    k.bind('$.Bench.Echo', True)
    os.write(ready_w, b'r')
    while True:
        m = k.wait_for_msg()
        if m is None:
            continue
        k.send_msg(reply_to(m, m.data))


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--iterations', type=int, default=20000)
    p.add_argument('--payload', type=int, default=64)
    p.add_argument('--pin', action='store_true')
    p.add_argument('--kbusd', default=os.environ.get('KBUSD') or
                   os.path.join(os.path.dirname(os.path.dirname(HERE)),
                                'build', 'kbusd'))
    args = p.parse_args()
    pin(args.pin)
    d = tempfile.mkdtemp(prefix='kbus-pybench-')
    os.environ['KBUS_DIR'] = d
    daemon = subprocess.Popen([args.kbusd, '--dir', d, '--max-msg-size',
                               '409600'])
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(os.path.join(d, 'kbus0')):
            if time.monotonic() > deadline or daemon.poll() is not None:
                sys.exit('kbusd did not start')
            time.sleep(0.01)
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                replier(ready_w, args.pin)
            finally:
                os._exit(0)
        os.read(ready_r, 1)
        k = Ksock(0)
        req = Request('$.Bench.Echo', b'x' * args.payload)
        times = []
        clock = time.perf_counter_ns
        warm = args.iterations // 10
        for i in range(args.iterations + warm):
            t0 = clock()
            mid = k.send_msg(req)
            while True:
                m = k.wait_for_msg()
                if m is not None and m.in_reply_to == mid:
                    break
            t1 = clock()
            if i >= warm:
                times.append(t1 - t0)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait()
        shutil.rmtree(d, ignore_errors=True)
    times.sort()
    n = len(times)
    print('Python request/reply round trip, payload %d B, %d iterations, '
          'scheduling: %s' % (args.payload, args.iterations,
                              'all on CPU 0' if args.pin else 'default'))
    print('%-28s %10s %10s %10s' % ('system', 'p50 us', 'p99 us', 'mean us'))
    print('%-28s %10.2f %10.2f %10.2f' % (
        'kbus Python send_msg+wait', times[n // 2] / 1000.0,
        times[min(n - 1, n * 99 // 100)] / 1000.0, sum(times) / n / 1000.0))


if __name__ == '__main__':
    main()
