#!/usr/bin/env python3
"""Request/reply round trip side by side, in one run: the AF_UNIX relay
floor, kbus through the C++ client (generic calls and request()), and kbus
through the Python client (generic calls), each in both scheduling modes.
Prints one table with p50/p99 and the ratios that matter:

    python3 bench/compare_rtt.py [--iterations N] [--build DIR]
"""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def rows(output):
    out = {}
    for line in output.splitlines():
        m = re.match(r'^(.+?)\s{2,}([\d.]+)\s+([\d.]+)\s+([\d.]+)', line)
        if m:
            out[m.group(1).strip()] = (float(m.group(2)), float(m.group(3)))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--iterations', type=int, default=20000)
    p.add_argument('--build', default=os.path.join(ROOT, 'build'))
    args = p.parse_args()
    cpp = os.path.join(args.build, 'bench', 'kbus_bench_rtt')
    env = dict(os.environ, KBUSD=os.path.join(args.build, 'kbusd'))
    print('%-30s %-8s %9s %9s %9s %10s' % ('system', 'sched', 'p50 us', 'p99 us',
                                         'x floor', 'x C++'))
    for pin in (False, True):
        flags = ['--iterations', str(args.iterations)] + (['--pin'] if pin else [])
        r = rows(subprocess.run([cpp] + flags, check=True, capture_output=True,
                                text=True).stdout)
        r.update(rows(subprocess.run(
            [sys.executable, os.path.join(ROOT, 'python', 'bench', 'rtt.py')] + flags,
            check=True, capture_output=True, text=True, env=env).stdout))
        floor = r['AF_UNIX relay (floor)'][0]
        cpp_generic = r['kbus C++ send_msg+wait'][0]
        for name, (p50, p99) in r.items():
            print('%-30s %-8s %9.2f %9.2f %9.2f %10.2f' % (
                name, 'pinned' if pin else 'default', p50, p99, p50 / floor,
                p50 / cpp_generic))


if __name__ == '__main__':
    main()
