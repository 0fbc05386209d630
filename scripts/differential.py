#!/usr/bin/env python3
"""Differential test of two kbusd binaries (docs/architecture.md §Checks).

Runs the same random operation sequences from several clients against an
old and a new kbusd and checks that every client gets byte-identical reply
frames from both. The clients speak the raw wire protocol
(docs/protocol.md) from this one process, strictly one step at a time, so
the sequence of events each daemon sees is the same: a step sends one
client's frames and reads exactly one reply per frame. A frame whose reply
the daemon may hold (WAITREAD, REQUEST, SENDWAIT, READBATCH with wait) is
always sent together with a RESET, which answers it (§4.4), so no reply
depends on timing. CLOSE is a shutdown(SHUT_WR) and a read to end-of-file
(docs/protocol.md §1), after which the client connects again.

    scripts/differential.py --old OLD/kbusd --new build/kbusd [--seeds 20]
                            [--steps 400] [--clients 4]

Exit status 0 if all replies agree; 1 with the first difference (seed,
step, client, the request and both replies in hex) otherwise.
"""
import argparse
import array
import ctypes
import os
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile

START_GUARD = 0x7375624B
END_GUARD = 0x4B627573
WANT_A_REPLY, WANT_YOU_TO_REPLY, SYNTHETIC, URGENT = 0x1, 0x2, 0x4, 0x8
ALL_OR_WAIT, ALL_OR_FAIL = 0x100, 0x200
NAMES = ['$.a', '$.a.b', '$.b', '$.c.d', '$.a.*', '$.c.%', '$.*']
SEND_NAMES = ['$.a', '$.a.b', '$.b', '$.c.d', '$.c.e', '$.zz']

OPS = dict(RESET=1, BIND=2, UNBIND=3, KSOCKID=4, REPLIER=5, NEXTMSG=6, LENLEFT=7, SEND=8,
           DISCARD=9, LASTSENT=10, MAXMSGS=11, NUMMSGS=12, UNREPLIEDTO=13, MSGONLYONCE=14,
           VERBOSE=15, NEWDEVICE=16, REPORTREPLIERBINDS=17, MAXMSGSIZE=18, HELLO=64,
           WRITE=65, READ=66, SENDMSG=67, NEXTREAD=68, WAITREAD=69, BINDINGS=70, STATS=71,
           REQUEST=72, SENDWAIT=73, SENDBATCH=74, READBATCH=75, POLLFD=76)


def u32(*vs):
    return b''.join(struct.pack('<I', v & 0xffffffff) for v in vs)


def frame(op, payload=b''):
    return u32(4 + len(payload), op) + payload


def entire(h, name, data, flags=0, to=0, in_reply_to=(0, 0), msg_id=(0, 0), pointy=False):
    """A message in entire form (or, pointy, its header only) for ABI h."""
    n, d = len(name), len(data)
    fields = u32(START_GUARD, msg_id[0], msg_id[1], in_reply_to[0], in_reply_to[1], to, 0,
                 0, 0, 0, 0, 0, flags, n, d)
    np_, dp = (1 if pointy else 0), (2 if pointy and d else 0)
    if h == 88:
        hdr = fields + u32(0) + struct.pack('<QQ', np_, dp) + u32(END_GUARD, 0)
    else:
        hdr = fields + u32(np_, dp, END_GUARD)
    if pointy:
        return hdr
    body = name + b'\0' * (4 * ((n + 4) // 4) - n) + data + b'\0' * (4 * ((d + 3) // 4) - d)
    return hdr + body + u32(END_GUARD)


class Client:
    def __init__(self, path, h, mode):
        self.path, self.h, self.mode = path, h, mode
        self.sock = None
        self.seen = []  # (id, from) of messages it read: to reply to

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)
        return [frame(OPS['HELLO'], u32(1, self.mode | 4, self.h))]

    def read_exact(self, n):
        buf = b''
        while len(buf) < n:
            data, anc, _, _ = self.sock.recvmsg(n - len(buf), socket.CMSG_SPACE(16))
            for level, kind, fds in anc:  # a poll fd (POLLFD): not ours to keep
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    a = array.array('i')
                    a.frombytes(fds[:len(fds) - len(fds) % a.itemsize])
                    for fd in a:
                        os.close(fd)
            if not data:
                raise EOFError('daemon closed the connection')
            buf += data
        return buf

    def read_reply(self):
        head = self.read_exact(4)
        (length,) = struct.unpack('<I', head)
        return head + self.read_exact(length)

    def close(self):
        """CLOSE: shut down writing, read to EOF (docs/protocol.md §1)."""
        self.sock.shutdown(socket.SHUT_WR)
        rest = b''
        while True:
            d = self.sock.recv(65536)
            if not d:
                break
            rest += d
        self.sock.close()
        self.sock = None
        return rest


def random_step(rng, c):
    """The frames of one step for client c (a list of bytes objects)."""
    h = c.h
    k = rng.random()
    name = rng.choice(SEND_NAMES).encode()
    data = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 4, 7, 30])))
    flags = rng.choice([0, 0, 0, WANT_A_REPLY, WANT_A_REPLY, ALL_OR_FAIL, ALL_OR_WAIT,
                        URGENT, WANT_A_REPLY | ALL_OR_FAIL])

    def message():
        if c.seen and rng.random() < 0.35:  # a Reply to something it read
            mid, frm = rng.choice(c.seen)
            return entire(h, name, data, flags=flags & ~WANT_A_REPLY, to=frm, in_reply_to=mid)
        if rng.random() < 0.05:  # a malformed one
            m = bytearray(entire(h, name, data, flags))
            m[rng.randrange(len(m))] ^= 0xff
            return bytes(m)
        return entire(h, name, data, flags)

    if k < 0.14:
        op = rng.choice(['BIND', 'BIND', 'UNBIND'])
        n = rng.choice(NAMES).encode()
        return [frame(OPS[op], u32(rng.choice([0, 1]), len(n)) + n)]
    if k < 0.30:
        return [frame(OPS['SENDMSG'], message())]
    if k < 0.36:
        m = message()
        cut = rng.randrange(len(m) + 1)
        return [frame(OPS['WRITE'], m[:cut]), frame(OPS['WRITE'], m[cut:]), frame(OPS['SEND'])]
    if k < 0.39:  # pointy: header by WRITE, name and data by SEND
        return [frame(OPS['WRITE'], entire(h, name, data, flags, pointy=True)),
                frame(OPS['SEND'], name + data)]
    if k < 0.50:
        return [frame(OPS['NEXTREAD'])]
    if k < 0.55:
        return [frame(OPS['NEXTMSG']), frame(OPS['READ'], u32(rng.choice([1, 10, 50, 4096]))),
                frame(OPS['LENLEFT'])]
    if k < 0.60:
        return [frame(OPS['WAITREAD']), frame(OPS['RESET'])]
    if k < 0.64:
        return [frame(OPS['REQUEST'], entire(h, name, data, flags | WANT_A_REPLY)),
                frame(OPS['RESET'])]
    if k < 0.67:
        return [frame(OPS['SENDWAIT'], message()), frame(OPS['RESET'])]
    if k < 0.71:
        items = b''.join(u32(len(m)) + m for m in (message() for _ in range(rng.randrange(4))))
        if rng.random() < 0.1:
            items += u32(1000)  # a bad item length: -EFAULT, nothing sent
        return [frame(OPS['SENDBATCH'], items)]
    if k < 0.75:
        wait = rng.choice([0, 1])
        f = [frame(OPS['READBATCH'], u32(rng.choice([0, 1, 3, 10]), rng.choice([0, 200, 100000]),
                                          wait))]
        return f + ([frame(OPS['RESET'])] if wait else [])
    if k < 0.79:
        return [frame(OPS['MAXMSGS'], u32(rng.choice([0, 1, 2, 5, 100])))]
    if k < 0.82:
        return [frame(OPS[rng.choice(['MSGONLYONCE', 'REPORTREPLIERBINDS'])],
                      u32(rng.choice([0, 1, 0xffffffff, 7])))]
    if k < 0.84:
        return [frame(OPS['MAXMSGSIZE'], u32(rng.choice([0, 1, 50, 200, 5000, 10 ** 7])))]
    if k < 0.88:
        n = rng.choice(NAMES).encode()
        return [frame(OPS['REPLIER'], u32(len(n)) + n)]
    if k < 0.92:
        return [frame(OPS[rng.choice(['KSOCKID', 'LASTSENT', 'NUMMSGS', 'UNREPLIEDTO',
                                      'DISCARD', 'POLLFD'])])]
    if k < 0.94:
        return [frame(OPS[rng.choice(['BINDINGS', 'STATS'])])]
    if k < 0.97:  # wrong payload sizes, an unknown op, HELLO again
        return [rng.choice([frame(OPS['KSOCKID'], b'x'), frame(OPS['MAXMSGS'], b'ab'),
                            frame(OPS['BIND'], u32(0, 99) + b'$.a'), frame(200),
                            frame(OPS['READBATCH'], u32(1, 1)),
                            frame(OPS['HELLO'], u32(1, 3, 88))])]
    return None  # CLOSE and open again


class Inotify:
    """Creations in one directory, as a pollable fd (libc's inotify)."""
    IN_CREATE, IN_MOVED_TO, IN_NONBLOCK, IN_CLOEXEC = 0x100, 0x80, 0o4000, 0o2000000

    def __init__(self, directory):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(self.IN_NONBLOCK | self.IN_CLOEXEC)
        if self.fd < 0 or self.libc.inotify_add_watch(
                self.fd, directory.encode(), self.IN_CREATE | self.IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), 'inotify on ' + directory)

    def wait(self, timeout_ms):
        select.select([self.fd], [], [], timeout_ms / 1000.0)
        try:
            os.read(self.fd, 65536)
        except BlockingIOError:
            pass

    def close(self):
        os.close(self.fd)


def wait_until_serving(proc, kbusd, last_socket, ino):
    """Waits until the daemon's last bus accepts connections: woken by the
    directory's creations (inotify), bounded, failing if the daemon exits."""
    for _ in range(60):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(last_socket)
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError('%s exited with %d' % (kbusd, proc.returncode))
            ino.wait(1000)
        finally:
            s.close()
    raise RuntimeError('%s does not serve %s' % (kbusd, last_socket))


def remember(c, reply, h):
    """Notes the id and sender of a message in a NEXTREAD reply."""
    length, status = struct.unpack('<Ii', reply[:8])
    if status == 1 and length >= 4 + h:
        mid = struct.unpack('<II', reply[12:20])
        frm = struct.unpack('<I', reply[32:36])[0]
        c.seen = (c.seen + [(mid, frm)])[-8:]


def run_sequence(kbusd, seed, steps, nclients):
    """Runs one random sequence against kbusd: the list of replies."""
    tmp = tempfile.mkdtemp(prefix='kbus-diff-')
    ino = Inotify(tmp)  # before the daemon starts: no event can be missed
    proc = subprocess.Popen([kbusd, '--dir', tmp, '--devices', '2'],
                            stderr=subprocess.DEVNULL)
    out = []
    try:
        path = os.path.join(tmp, 'kbus0')
        wait_until_serving(proc, kbusd, os.path.join(tmp, 'kbus1'), ino)
        rng = random.Random(seed)
        clients = [Client(path, rng.choice([88, 88, 72]), rng.choice([3] * 8 + [1, 2]))
                   for _ in range(nclients)]
        for c in clients:
            c.sock = None
        for step in range(steps):
            i = rng.randrange(nclients)
            c = clients[i]
            if c.sock is None:
                frames = c.connect()
            else:
                frames = random_step(rng, c)
            if frames is None:
                out.append((step, i, b'CLOSE', c.close()))
                continue
            c.sock.sendall(b''.join(frames))
            for f in frames:
                try:
                    r = c.read_reply()
                except EOFError:
                    out.append((step, i, f, b'EOF'))
                    c.sock.close()
                    c.sock = None
                    break
                if struct.unpack('<I', f[4:8])[0] == OPS['NEXTREAD']:
                    remember(c, r, c.h)
                out.append((step, i, f, r))
        for i, c in enumerate(clients):
            if c.sock is not None:
                out.append((steps, i, b'CLOSE', c.close()))
    finally:
        ino.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--old', required=True, help='the reference kbusd')
    p.add_argument('--new', required=True, help='the kbusd under test')
    p.add_argument('--seeds', type=int, default=20)
    p.add_argument('--first-seed', type=int, default=1)
    p.add_argument('--steps', type=int, default=400)
    p.add_argument('--clients', type=int, default=4)
    a = p.parse_args()
    total = 0
    for seed in range(a.first_seed, a.first_seed + a.seeds):
        old = run_sequence(a.old, seed, a.steps, a.clients)
        new = run_sequence(a.new, seed, a.steps, a.clients)
        for x, y in zip(old, new):
            if x != y:
                print('DIFFERENT at seed %d step %d client %d\n  request %s\n  old     %s\n'
                      '  new     %s' % (seed, x[0], x[1], x[2].hex(), x[3].hex(),
                                        y[3].hex() if x[:3] == y[:3] else repr(y)))
                return 1
        if len(old) != len(new):
            print('DIFFERENT at seed %d: %d replies from the old daemon, %d from the new'
                  % (seed, len(old), len(new)))
            return 1
        total += len(old)
    print('differential: %d seeds x %d steps x %d clients: %d replies, all byte-identical'
          % (a.seeds, a.steps, a.clients, total))
    return 0


if __name__ == '__main__':
    sys.exit(main())
