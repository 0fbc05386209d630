"""What the Python benchmarks of bench/ share (bench/kbus_py.py,
bench/peers_py.py): the RESULT line that bench/run.py reads, the same
summary maths as the C++ benchmarks (bench/bench_common.hpp), the timed
round-trip loop, and a child process (the server of a round trip) with a
readiness pipe and a lifeline, so that no wait is unbounded and no child
outlives the benchmark.
"""

import json
import os
import select
import signal
import sys
import time


def emit(**row):
    base = dict(system='', test='', payload=0, listeners=0, p50_us=-1,
                p99_us=-1, mean_us=-1, n=0, rate=-1, sent=-1, lost=-1,
                value=-1, unit='', note='')
    base.update(row)
    print('RESULT ' + json.dumps(base), flush=True)


def summarise(ns, elapsed):
    ns.sort()
    n = len(ns)
    return dict(p50_us=ns[n // 2] / 1000.0,
                p99_us=ns[min(n - 1, n * 99 // 100)] / 1000.0,
                mean_us=sum(ns) / n / 1000.0, n=n, rate=n * 1e9 / elapsed)


def time_round_trips(iterations, once):
    """A tenth as many untimed warm-up calls, then `iterations` timed ones
    (time.perf_counter_ns); returns summarise() of them."""
    clock = time.perf_counter_ns
    for _ in range(iterations // 10):
        once()
    times = []
    start = clock()
    for _ in range(iterations):
        t0 = clock()
        once()
        times.append(clock() - t0)
    return summarise(times, clock() - start)


def fail(prog, message, code=2):
    print('%s: %s' % (prog, message), file=sys.stderr, flush=True)
    sys.exit(code)


class Child:
    """A forked server. `body(ready, lifeline)` runs in the child: it must
    call ready() once it serves, and stop when `lifeline` (a file
    descriptor) becomes readable: that is end of file, when the parent has
    gone or called stop(). The child's exit status is 0 if body returns, 1
    if it raises: the traceback goes to stderr and, before ready(), the
    exception to the parent through wait_ready()."""

    def __init__(self, body):
        ready_r, ready_w = os.pipe()
        life_r, life_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(ready_r)
            os.close(life_w)
            status = 1
            try:
                body(lambda: os.write(ready_w, b'r'), life_r)
                status = 0
            except BaseException as e:
                import traceback
                traceback.print_exc()
                try:
                    os.write(ready_w, ('e%s: %s' % (type(e).__name__, e)).encode()[:512])
                except OSError:
                    pass
            finally:
                sys.stderr.flush()
                os._exit(status)
        os.close(ready_w)
        os.close(life_r)
        self.ready_r = ready_r
        self.life_w = life_w
        self.status = None

    def wait_ready(self, timeout):
        """None once the child said it serves; else why not (it exited
        first, or did not say so within `timeout` seconds: it is then
        stopped)."""
        r, _, _ = select.select([self.ready_r], [], [], timeout)
        said = os.read(self.ready_r, 1024) if r else b''
        os.close(self.ready_r)
        if said == b'r':
            return None
        if said.startswith(b'e'):
            return '%s (%s)' % (said[1:].decode(errors='replace'), self.stop(5))
        if r:
            return 'it ended before it was ready (%s)' % self.stop(5)
        return 'it was not ready within %g s (%s)' % (timeout, self.stop(0))

    def stop(self, timeout):
        """Closes the lifeline and waits up to `timeout` seconds for the
        child to end, then kills it. Returns how it ended."""
        if self.life_w is not None:
            os.close(self.life_w)
            self.life_w = None
        if self.status is None:
            pidfd = os.pidfd_open(self.pid)
            try:
                ended, _, _ = select.select([pidfd], [], [], timeout)
            finally:
                os.close(pidfd)
            if not ended:
                os.kill(self.pid, signal.SIGKILL)
            self.status = os.waitpid(self.pid, 0)[1]
            if not ended:
                return 'killed after %g s' % timeout
        if os.WIFSIGNALED(self.status):
            return 'killed by signal %d' % os.WTERMSIG(self.status)
        return 'exit status %d' % os.WEXITSTATUS(self.status)
