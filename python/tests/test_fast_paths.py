"""The one-round-trip and batch calls (docs/protocol.md 4.5-4.6): request,
send_msgs, read_msgs, wait_for_msgs. They change the cost of the generic
calls, never their meaning."""

import errno
import select
import threading

import pytest

from kbus import Ksock, Announcement, Request, reply_to

pytestmark = pytest.mark.usefixtures('kbusd')


def test_request_returns_the_reply_and_leaves_the_rest_queued():
    with Ksock(0) as q, Ksock(0) as r, Ksock(0) as other:
        r.bind('$.Q', True)
        q.bind('$.Q')              # q hears its own request and the reply
        q.bind('$.Other')
        other.send_msg(Announcement('$.Other', b'before'))

        def answer():
            req = r.wait_for_msg(5)
            r.send_msg(reply_to(req, b'answer'))
        t = threading.Thread(target=answer)
        t.start()
        ans = q.request(Request('$.Q', b'question'), timeout=5)
        t.join()
        assert ans.is_reply() and ans.data == b'answer'
        assert ans.to == q.ksock_id() and ans.from_ == r.ksock_id()
        rest = q.read_msgs(10)
        assert [m.data for m in rest] == [b'before', b'question', b'answer']
        assert rest[1].is_request() and rest[2].is_reply()
        assert q.num_messages() == 0


def test_request_gets_the_status_when_the_replier_goes():
    with Ksock(0) as q:
        r = Ksock(0)
        r.bind('$.Q', True)

        def vanish():
            r.wait_for_msg(5)
            r.close()
        t = threading.Thread(target=vanish)
        t.start()
        ans = q.request(Request('$.Q'), timeout=5)
        t.join()
        assert ans.name == '$.KBUS.Replier.Ignored'
        assert ans.is_synthetic()


def test_request_errors():
    with Ksock(0) as q:
        with pytest.raises(OSError) as e:
            q.request(Request('$.Nobody'))
        assert e.value.errno == errno.EADDRNOTAVAIL
        with pytest.raises(OSError) as e:
            q.request(Announcement('$.Nobody'))
        assert e.value.errno == errno.EINVAL
    with Ksock(0, 'r') as ro:
        with pytest.raises(OSError) as e:
            ro.request(Request('$.Nobody'))
        assert e.value.errno == errno.EBADF


def test_request_timeout_leaves_the_answer_queued():
    with Ksock(0) as q, Ksock(0) as r:
        r.bind('$.Q', True)
        with pytest.raises(OSError) as e:
            q.request(Request('$.Q', b'late'), timeout=0.05)
        assert e.value.errno == errno.ETIMEDOUT
        req = r.read_next_msg()
        r.send_msg(reply_to(req, b'late answer'))
        assert q.wait_for_msg(5).data == b'late answer'


def test_send_msgs_stops_at_the_first_failure():
    with Ksock(0) as s, Ksock(0) as l:
        l.bind('$.B')
        msgs = [Announcement('$.B', b'1'), Announcement('$.B', b'2'),
                Request('$.NoReplier'), Announcement('$.B', b'4')]
        with pytest.raises(OSError) as e:
            s.send_msgs(msgs)
        assert e.value.errno == errno.EADDRNOTAVAIL
        ids = e.value.ids
        assert len(ids) == 3
        assert ids[1] == ids[0] + 1 and ids[2] == ids[1] + 1
        assert s.last_msg_id() == ids[2]
        assert [m.data for m in l.read_msgs(10)] == [b'1', b'2']
        ok = s.send_msgs([Announcement('$.B', b'x'), Announcement('$.B', b'y')])
        assert len(ok) == 2
        assert [m.id for m in l.read_msgs(10)] == ok


def test_read_msgs_is_bounded_by_count_and_bytes():
    with Ksock(0) as s, Ksock(0) as l:
        l.bind('$.B')
        s.send_msgs([Announcement('$.B', str(i)) for i in range(5)])
        assert [m.data for m in l.read_msgs(2)] == [b'0', b'1']
        assert l.num_messages() == 3
        assert [m.data for m in l.read_msgs(10, max_bytes=1)] == [b'2']
        assert [m.data for m in l.wait_for_msgs(10, timeout=1)] == [b'3', b'4']
        assert l.read_msgs(10) == []
        assert l.wait_for_msgs(10, timeout=0.02) == []
        r, w, x = select.select([l], [], [], 0)
        assert r == []


def test_wait_for_msgs_wakes_on_arrival():
    with Ksock(0) as s, Ksock(0) as l:
        l.bind('$.B')
        got = []
        t = threading.Thread(target=lambda: got.extend(l.wait_for_msgs(10, 5)))
        t.start()
        s.send_msg(Announcement('$.B', b'wake'))
        t.join()
        assert got and got[0].data == b'wake'


def test_send_msgs_to_a_name_bound_thousands_of_times_sends_every_message():
    # docs/protocol.md 4.6, docs/reliability.md 4: kbusd bounds the fan-out
    # of one SENDBATCH frame and leaves the rest unsent (status 0, a shorter
    # count); send_msgs sends the rest again, in order, until all are sent.
    with Ksock(0) as s, Ksock(0) as l:
        for _ in range(2000):
            l.bind('$.Fan')
        ids = s.send_msgs([Announcement('$.Fan', b'f')] * 100)  # 200 000 copies
        assert len(ids) == 100
        assert all(b == a + 1 for a, b in zip(ids, ids[1:]))
        assert s.last_msg_id() == ids[-1]


def test_the_bindings_report_comes_in_parts_and_is_complete():
    # KBUS-SPEC.md 9.1, docs/protocol.md 4.3: a report longer than one part
    # (64 KiB) is read in parts (BINDINGSPART) and put together, newest
    # binding first.
    names = ['$.Part.%05d.%s' % (i, 'x' * 40) for i in range(3000)]
    with Ksock(0) as k:
        for n in names:
            k.bind(n)
        lines = k._bindings_report().splitlines()
        heads = [l for l in lines if l.startswith('#')]
        assert lines[0] == heads[0] and len(heads) == 3  # one per bus
        assert [l.split()[-1] for l in lines if not l.startswith('#')] == names[::-1]
        stats = k._stats_report().splitlines()
        assert stats[0].startswith('dev  0:')
