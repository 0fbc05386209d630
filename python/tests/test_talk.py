"""The talk (shared/seed/000_*.txt): Rosencrantz, Audience, Guildenstern and
Falstaff, each an interactive Python session in its own process, replayed
against a real kbusd.

Each terminal is a separate Python process (tests/talk_actor.py) that runs
what was typed at its prompt and sends back what it printed; this test is
the presenter, deciding who types next, so the processes are coordinated by
their pipes only. Every message printed in the talk is checked, in its
Python 3 form (b'...' data, no L suffixes), except that absolute ids are
replaced by ids relative to the first ones: in the talk Rosencrantz is Ksock
113 and his first message is [0:337]; here they are R and S.

Where the talk's loops ran until CTRL-C they run here for the number of
messages the talk shows. The slides' typos ('$Actor.Speak', '$$.Actor.Speak',
'$ .Actor.Speak', 'rosenrantz', the second Request shown as [0:343]) are
replayed as intended, and the Reply shown to the Audience as 'Yes, yes I
shall' is what Guildenstern sends (his slide shows 'I shall').
"""

import json
import os
import re
import select
import subprocess
import sys

import pytest

ACTOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'talk_actor.py')
ANSWER_TIMEOUT = 30.0


class Terminal(object):
    """A Python session in another process."""

    def __init__(self, name, env):
        self.name = name
        self.proc = subprocess.Popen([sys.executable, ACTOR],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env,
                                     bufsize=0)
        self.buf = b''
        self.busy = False

    def type(self, *inputs):
        """Start running these inputs; do not wait for them."""
        assert not self.busy, '%s is still busy' % self.name
        self.proc.stdin.write(json.dumps({'inputs': inputs}).encode() + b'\n')
        self.busy = True

    def answer(self):
        """What the last inputs printed (waits for them to finish)."""
        assert self.busy
        fd = self.proc.stdout.fileno()
        while b'\n' not in self.buf:
            r, _, _ = select.select([fd], [], [], ANSWER_TIMEOUT)
            assert r, '%s printed nothing for %gs' % (self.name, ANSWER_TIMEOUT)
            chunk = os.read(fd, 65536)
            assert chunk, '%s exited (status %s)' % (self.name, self.proc.poll())
            self.buf += chunk
        line, self.buf = self.buf.split(b'\n', 1)
        self.busy = False
        return json.loads(line)

    def do(self, *inputs):
        """Run the inputs; returns what they printed. Fails on an exception."""
        self.type(*inputs)
        result = self.answer()
        assert result['exc'] is None, '%s: %s' % (self.name,
                                                 result['exc']['traceback'])
        return result['out']

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def terminals(kbusd):
    terms = {}
    try:
        for name in ('Rosencrantz', 'Audience', 'Guildenstern', 'Falstaff'):
            terms[name] = Terminal(name, kbusd.env)
        yield terms
    finally:
        for t in terms.values():
            t.close()


def lines(text, **ids):
    """The expected output: text (one printed line per line) with {R}, {s1}
    etc. replaced."""
    return '\n'.join(l.strip() for l in text.strip().splitlines()).format(**ids) + '\n'


def test_the_talk(terminals):
    ros = terminals['Rosencrantz']
    aud = terminals['Audience']
    gui = terminals['Guildenstern']
    fal = terminals['Falstaff']

    # -- Simple use: Senders and Listeners
    out = ros.do("from kbus import Ksock",
                 "rosencrantz = Ksock(0)",
                 "print(rosencrantz)")
    m = re.fullmatch(r'Ksock device 0, id (\d+), mode read/write\n', out)
    assert m, out
    R = int(m.group(1))
    out = ros.do("from kbus import Message",
                 "ahem = Message('$.Actor.Speak', 'Ahem')",
                 "rosencrantz.send_msg(ahem)")
    m = re.fullmatch(r'MessageId\(0, (\d+)\)\n', out)
    assert m, out
    S = int(m.group(1))
    ids = dict(R=R, A=R + 1, G=R + 2, F=R + 3)
    ids.update(('s%d' % i, S + i) for i in range(13))

    def expect(text):
        return lines(text, **ids)

    assert aud.do("from kbus import *",
                  "audience = Ksock(0)",
                  "audience.bind('$.Actor.Speak')") == ''
    assert ros.do("rosencrantz.send_msg(ahem)") == expect("MessageId(0, {s1})")
    assert aud.do("audience.read_next_msg()") == expect(
        "Message('$.Actor.Speak', data=b'Ahem', from_={R}, id=MessageId(0, {s1}))")
    assert aud.do("print(_)") == expect(
        "<Announcement '$.Actor.Speak', id=[0:{s1}], from={R}, data=b'Ahem'>")
    assert ros.do("rosencrantz.ksock_id()") == expect("{R}")
    assert aud.do("print(audience.read_next_msg())") == "None\n"

    aud.type("import select",
             "for i in range(2):\n"
             "    (r,w,x) = select.select([audience], [], [])\n"
             "    # At this point, r should contain audience\n"
             "    print(audience.read_next_msg())\n")
    assert ros.do("rosencrantz.send_msg(Message('$.Actor.Speak',\n"
                  "'Hello there'))",
                  "rosencrantz.send_msg(Message('$.Actor.Speak',\n"
                  "'Can you hear me?'))") == expect("""
        MessageId(0, {s2})
        MessageId(0, {s3})""")
    a = aud.answer()
    assert a['exc'] is None
    assert a['out'] == expect("""
        <Announcement '$.Actor.Speak', id=[0:{s2}], from={R}, data=b'Hello there'>
        <Announcement '$.Actor.Speak', id=[0:{s3}], from={R}, data=b'Can you hear me?'>""")

    assert gui.do("from kbus import *",
                  "guildenstern = Ksock(0)",
                  "print(guildenstern)") == expect(
        "Ksock device 0, id {G}, mode read/write")
    assert gui.do("guildenstern.bind('$.Actor.*')") == ''
    # (the Audience's loop above is where CTRL-C was pressed)
    assert aud.do("audience.bind('$.Actor.*')") == ''
    aud.type("for i in range(2):\n"
             "    print(audience.wait_for_msg())\n")
    assert ros.do("rosencrantz.bind('$.Actor.*')") == ''
    assert gui.do("guildenstern.send_msg(Message('$.Actor.Speak',\n"
                  "'Pssst!'))",
                  "print(guildenstern.read_next_msg())") == expect("""
        MessageId(0, {s4})
        <Announcement '$.Actor.Speak', id=[0:{s4}], from={G}, data=b'Pssst!'>""")
    assert ros.do("msg = rosencrantz.read_next_msg()",
                  "print(msg)") == expect(
        "<Announcement '$.Actor.Speak', id=[0:{s4}], from={G}, data=b'Pssst!'>")
    a = aud.answer()
    assert a['exc'] is None
    assert a['out'] == expect("""
        <Announcement '$.Actor.Speak', id=[0:{s4}], from={G}, data=b'Pssst!'>
        <Announcement '$.Actor.Speak', id=[0:{s4}], from={G}, data=b'Pssst!'>""")
    assert aud.do("audience.unbind('$.Actor.Speak')") == ''
    aud.type("for i in range(8):\n"
             "    msg = audience.wait_for_msg()\n"
             "    print(msg)\n")

    # -- Simple use: Requests and Repliers
    assert gui.do("guildenstern.bind('$.Actor.Ask.Guildenstern', True)") == ''
    assert ros.do("from kbus import Request",
                  "req = Request('$.Actor.Ask.Guildenstern',\n"
                  "'Were you speaking to me?')",
                  "rosencrantz.send_msg(req)") == expect("MessageId(0, {s5})")
    assert ros.do("print(rosencrantz.read_next_msg())",
                  "rosencrantz.unbind('$.Actor.*')") == expect(
        "<Request '$.Actor.Ask.Guildenstern', id=[0:{s5}], from={R}, "
        "flags=0x1 (REQ), data=b'Were you speaking to me?'>")
    assert gui.do("req = guildenstern.read_next_msg()",
                  "print(req)",
                  "print(req.wants_us_to_reply())") == expect("""
        <Request '$.Actor.Ask.Guildenstern', id=[0:{s5}], from={R}, flags=0x3 (REQ,YOU), data=b'Were you speaking to me?'>
        True""")
    assert gui.do("msg = guildenstern.read_next_msg()",
                  "print(msg)",
                  "guildenstern.unbind('$.Actor.*')") == expect(
        "<Request '$.Actor.Ask.Guildenstern', id=[0:{s5}], from={R}, "
        "flags=0x1 (REQ), data=b'Were you speaking to me?'>")
    assert gui.do("rep = reply_to(req, 'Yes, yes I was')",
                  "print(rep)",
                  "guildenstern.send_msg(rep)",
                  "guildenstern.read_next_msg()") == expect("""
        <Reply '$.Actor.Ask.Guildenstern', to={R}, in_reply_to=[0:{s5}], data=b'Yes, yes I was'>
        MessageId(0, {s6})""")
    assert ros.do("rep = rosencrantz.read_next_msg()",
                  "print(rep)") == expect(
        "<Reply '$.Actor.Ask.Guildenstern', id=[0:{s6}], to={R}, from={G}, "
        "in_reply_to=[0:{s5}], data=b'Yes, yes I was'>")

    # -- Simple use: Stateful Requests
    assert ros.do("req = Request('$.Actor.Ask.Guildenstern',\n"
                  "'Will you count heads for me?')",
                  "rosencrantz.send_msg(req)") == expect("MessageId(0, {s7})")
    assert gui.do("req = guildenstern.read_next_msg()",
                  "guildenstern.send_msg(reply_to(req, 'Yes, yes I shall'))") == \
        expect("MessageId(0, {s8})")
    assert gui.do("guildenstern.bind('$.Actor.CoinToss', True)",
                  "heads = 0") == ''
    # Guildenstern's `while True:` loop, one toss at a time so that
    # Rosencrantz reads each count only once it has been sent.
    toss_loop = ("for i in range(1):\n"
                 "    toss = guildenstern.wait_for_msg()\n"
                 "    print(toss)\n"
                 "    if toss.data == b'Head':\n"
                 "        print('A head - amazing')\n"
                 "        heads += 1\n"
                 "    else:\n"
                 "        print('Bah, tails')\n"
                 "    rep = reply_to(toss, 'Head count is %d'%heads)\n"
                 "    guildenstern.send_msg(rep)\n")
    gui.type(toss_loop)
    assert ros.do("rep = rosencrantz.read_next_msg()",
                  "print(rep.from_)") == expect("{G}")
    assert ros.do("# Throws a head\n"
                  "from kbus import stateful_request",
                  "sreq = stateful_request(rep, '$.Actor.CoinToss',\n"
                  "'Head')",
                  "print(sreq)",
                  "rosencrantz.send_msg(sreq)") == expect("""
        <Request '$.Actor.CoinToss', to={G}, flags=0x1 (REQ), data=b'Head'>
        MessageId(0, {s9})""")
    g = gui.answer()
    assert g['exc'] is None
    assert g['out'] == expect("""
        <Request '$.Actor.CoinToss', id=[0:{s9}], to={G}, from={R}, flags=0x3 (REQ,YOU), data=b'Head'>
        A head - amazing
        MessageId(0, {s10})""")
    gui.type(toss_loop)
    assert ros.do("count = rosencrantz.read_next_msg()",
                  "print('So,',count.data.decode())",
                  "# Throws a head\n"
                  "sreq = stateful_request(rep, '$.Actor.CoinToss',\n"
                  "'Head')",
                  "rosencrantz.send_msg(sreq)") == expect("""
        So, Head count is 1
        MessageId(0, {s11})""")
    g = gui.answer()
    assert g['exc'] is None
    assert g['out'] == expect("""
        <Request '$.Actor.CoinToss', id=[0:{s11}], to={G}, from={R}, flags=0x3 (REQ,YOU), data=b'Head'>
        A head - amazing
        MessageId(0, {s12})""")
    assert ros.do("count = rosencrantz.read_next_msg()",
                  "print('So,',count.data.decode())") == "So, Head count is 2\n"

    assert gui.do("print('Falstaff! No! Ouch!')",
                  "guildenstern.close()") == "Falstaff! No! Ouch!\n"
    assert fal.do("from kbus import *",
                  "falstaff = Ksock(0)",
                  "falstaff.bind('$.Actor.CoinToss', True)") == ''
    assert fal.do("falstaff.ksock_id()") == expect("{F}")

    ros.type("sreq = stateful_request(rep, '$.Actor.CoinToss',\n"
             "'Head')",
             "rosencrantz.send_msg(sreq)")
    r = ros.answer()
    assert r['exc'] is not None, r
    assert r['exc']['type'] in ('BrokenPipeError', 'OSError')
    assert r['exc']['errno'] == 32
    assert r['out'] == 'BrokenPipeError: [Errno 32] Broken pipe\n'

    a = aud.answer()
    assert a['exc'] is None
    assert a['out'] == expect("""
        <Request '$.Actor.Ask.Guildenstern', id=[0:{s5}], from={R}, flags=0x1 (REQ), data=b'Were you speaking to me?'>
        <Reply '$.Actor.Ask.Guildenstern', id=[0:{s6}], to={R}, from={G}, in_reply_to=[0:{s5}], data=b'Yes, yes I was'>
        <Request '$.Actor.Ask.Guildenstern', id=[0:{s7}], from={R}, flags=0x1 (REQ), data=b'Will you count heads for me?'>
        <Reply '$.Actor.Ask.Guildenstern', id=[0:{s8}], to={R}, from={G}, in_reply_to=[0:{s7}], data=b'Yes, yes I shall'>
        <Request '$.Actor.CoinToss', id=[0:{s9}], to={G}, from={R}, flags=0x1 (REQ), data=b'Head'>
        <Reply '$.Actor.CoinToss', id=[0:{s10}], to={R}, from={G}, in_reply_to=[0:{s9}], data=b'Head count is 1'>
        <Request '$.Actor.CoinToss', id=[0:{s11}], to={G}, from={R}, flags=0x1 (REQ), data=b'Head'>
        <Reply '$.Actor.CoinToss', id=[0:{s12}], to={R}, from={G}, in_reply_to=[0:{s11}], data=b'Head count is 2'>""")
    # nothing else reached anyone
    assert aud.do("print(audience.read_next_msg())") == "None\n"
    assert ros.do("print(rosencrantz.read_next_msg())") == "None\n"
    assert fal.do("print(falstaff.read_next_msg())") == "None\n"
