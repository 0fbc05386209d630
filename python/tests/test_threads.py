"""One Ksock used by several threads at once, as an open /dev/kbusN could
be (KBUS-SPEC.md 1.2, 4; docs/protocol.md 4.4: a held WAITREAD is answered
early by any further frame, and the waiter waits again; docs/decisions.md
D22).

Whether a wait is already held by kbusd when another thread's frame arrives
varies from run to run, and every order must give the same results, so the
scenarios run many rounds. Threads meet on messages and joins, never on
sleeps; timeouts are only upper bounds.
"""

import errno
import threading

import pytest

from kbus import Ksock, Announcement, Request, reply_to

pytestmark = pytest.mark.usefixtures('kbusd')

ROUNDS = 20


def key(mid):
    """A MessageId as a dict key."""
    return (mid.network_id, mid.serial_num)


def run(target, *args):
    """Starts ``target(*args)`` in a thread; returns (thread, result dict):
    'value' or 'error' once it has returned."""
    result = {}

    def body():
        try:
            result['value'] = target(*args)
        except BaseException as e:          # reported by the test
            result['error'] = e
    t = threading.Thread(target=body)
    t.start()
    return t, result


def test_untimed_wait_while_another_thread_binds_asks_and_sends():
    with Ksock(0) as k:
        k.bind('$.T.Self')
        for rnd in range(ROUNDS):
            t, got = run(k.wait_for_msg)
            other = '$.T.Other%d' % rnd
            k.bind(other, True)
            assert k.find_replier(other) == k.ksock_id()
            assert k.num_messages() == 0
            k.unbind(other, True)
            assert k.find_replier(other) is None
            data = b'round %d' % rnd
            mid = k.send_msg(Announcement('$.T.Self', data))
            t.join()
            assert 'error' not in got, got
            m = got['value']
            assert m is not None, 'the waiter returned with no message'
            assert m.id == mid and m.data == data and m.name == '$.T.Self'


def test_timed_wait_answered_early_waits_on():
    with Ksock(0) as k:
        k.bind('$.T.Self')
        for rnd in range(ROUNDS):
            t, got = run(k.wait_for_msg, 60)
            for _ in range(5):
                assert k.ksock_id() > 0
            mid = k.send_msg(Announcement('$.T.Self', b'timed'))
            t.join()
            assert got.get('value') is not None, got
            assert got['value'].id == mid


def test_timed_waits_expire_among_other_threads_calls():
    with Ksock(0) as k:
        k.bind('$.T.Self')
        stop = threading.Event()
        outcome = {'timeouts': 0, 'messages': 0}

        def waiter():
            while True:     # at least once, however late this thread starts
                if k.wait_for_msg(0.001) is None:
                    outcome['timeouts'] += 1
                else:
                    outcome['messages'] += 1
                if stop.is_set():
                    return
        t, got = run(waiter)
        kid = k.ksock_id()
        for _ in range(300):
            assert k.ksock_id() == kid
        stop.set()
        t.join()
        assert 'error' not in got, got
        assert outcome['messages'] == 0 and outcome['timeouts'] > 0
        mid = k.send_msg(Announcement('$.T.Self', b'after'))
        assert k.wait_for_msg(60).id == mid


def test_waiter_and_reader_share_the_queue_exactly_once():
    with Ksock(0) as k:
        k.bind('$.T.Data')
        k.bind('$.T.Stop')
        k.set_max_messages(10000)   # all may be queued at once: none dropped
        waited = []

        def waiter():
            while True:
                m = k.wait_for_msg()
                if m.name == '$.T.Stop':
                    return
                waited.append(m)
        t, got = run(waiter)
        sent = {}
        read = []
        for i in range(300):
            data = b'm%d' % i
            sent[key(k.send_msg(Announcement('$.T.Data', data)))] = data
            if i % 3 == 0:
                m = k.read_next_msg()
                if m is not None:
                    read.append(m)
        k.send_msg(Announcement('$.T.Stop'))
        t.join()
        assert 'error' not in got, got
        for lst in (waited, read):
            ids = [m.id for m in lst]
            assert ids == sorted(ids), 'out of queue order'
            for m in lst:
                assert sent[key(m.id)] == m.data
        all_ids = [key(m.id) for m in waited + read]
        assert len(all_ids) == len(set(all_ids)) == len(sent)
        assert k.num_messages() == 0


def _echo(replier, stop_name):
    while True:
        m = replier.wait_for_msg()
        if m.name == stop_name:
            return
        replier.send_msg(reply_to(m, m.data + b'!'))


def test_request_while_another_thread_waits():
    with Ksock(0) as k, Ksock(0) as r:
        k.bind('$.T.Self')
        r.bind('$.T.Echo', True)
        r.bind('$.T.Stop')
        rt, rgot = run(_echo, r, '$.T.Stop')
        for rnd in range(ROUNDS):
            t, got = run(k.wait_for_msg)
            q = b'q%d' % rnd
            ans = k.request(Request('$.T.Echo', q), timeout=60)
            assert ans.is_reply() and ans.data == q + b'!'
            assert ans.to == k.ksock_id()
            mid = k.send_msg(Announcement('$.T.Self', b'for the waiter'))
            t.join()
            assert got.get('value') is not None, got
            assert got['value'].id == mid
        k.send_msg(Announcement('$.T.Stop'))
        rt.join()
        assert 'error' not in rgot, rgot


def test_close_wakes_blocked_threads_with_ebadf():
    with Ksock(0) as r:
        r.bind('$.T.Silent', True)      # never answers
        for rnd in range(10):
            k = Ksock(0)
            kid = k.ksock_id()
            calls = [(k.wait_for_msg,), (k.wait_for_msg, 600),
                     (k.request, Request('$.T.Silent')),
                     (k.wait_for_msgs, 4)]
            started = [run(*c) for c in calls]
            req = r.wait_for_msg(60)    # the REQUEST is held now
            assert req is not None and req.from_ == kid
            k.close()
            for t, got in started:
                t.join()
                assert isinstance(got.get('error'), OSError), got
                assert got['error'].errno == errno.EBADF, got
            with pytest.raises(OSError) as e:
                k.ksock_id()
            assert e.value.errno == errno.EBADF


def test_many_threads_mixed_calls_each_get_their_own_replies():
    with Ksock(0) as k, Ksock(0) as r:
        k.bind('$.T.Data')
        k.bind('$.T.Stop')
        k.set_max_messages(10000)   # all may be queued at once: none dropped
        r.bind('$.T.Echo', True)
        r.bind('$.T.Stop')
        rt, rgot = run(_echo, r, '$.T.Stop')
        lock = threading.Lock()
        sent = {}
        received = []
        kid = k.ksock_id()

        def waiter():
            while True:
                m = k.wait_for_msg()
                if m.name == '$.T.Stop':
                    return
                with lock:
                    received.append(m)

        def worker(n):
            last = None
            mine = '$.T.Mine%d' % n
            for i in range(80):
                data = b't%d-%d' % (n, i)
                op = i % 8
                if op in (0, 1):
                    mid = k.send_msg(Announcement('$.T.Data', data))
                    assert last is None or last < mid
                    last = mid
                    with lock:
                        sent[data] = mid
                elif op == 2:
                    m = k.read_next_msg()
                    if m is not None:
                        with lock:
                            received.append(m)
                elif op == 3:
                    ans = k.request(Request('$.T.Echo', data), timeout=60)
                    assert ans.data == data + b'!' and ans.to == kid
                    assert last is None or last < ans.in_reply_to
                    last = ans.in_reply_to
                elif op == 4:
                    k.bind(mine, True)
                    assert k.find_replier(mine) == kid
                    k.unbind(mine, True)
                    assert k.find_replier(mine) is None
                elif op == 5:
                    assert k.ksock_id() == kid
                    assert k.num_messages() < 10000
                elif op == 6:
                    m = k.wait_for_msg(0.001)
                    if m is not None:
                        with lock:
                            received.append(m)
                else:
                    ms = k.read_msgs(3)
                    with lock:
                        received.extend(ms)

        wt, wgot = run(waiter)
        workers = [run(worker, n) for n in range(5)]
        for t, got in workers:
            t.join()
            assert 'error' not in got, got
        k.send_msg(Announcement('$.T.Stop'))
        wt.join()
        assert 'error' not in wgot, wgot
        rem = k.read_msgs(1000)
        received.extend(rem)
        k.send_msg(Announcement('$.T.Stop'))
        rt.join()
        # k heard its own Stop once more (bound to it): the only other message
        assert [m.name for m in k.read_msgs(10)] == ['$.T.Stop']
        assert k.num_messages() == 0
        ids = [key(m.id) for m in received]
        assert len(ids) == len(set(ids)), 'a message was received twice'
        assert len(received) == len(sent) == 5 * 20
        for m in received:
            assert m.name == '$.T.Data'
            assert sent[m.data] == m.id, 'contents and id do not match'
