// kbus_bench_raw: the floors, with nothing but the kernel in between.
//
//   kbus_bench_raw rtt --transport seqpacket|seqpacket-relay|stream-relay|
//                                  epoll-seqpacket-relay|epoll-stream-relay|mq|
//                                  acked-relay|acked-relay-epoll
//                      [--payload B] [--iterations N] [--order ack-first|deliver-first]
//   kbus_bench_raw tput --listeners L [--payload B] [--messages M]
//                       [--acked push|pull [--relay blocking|epoll]
//                        [--order ack-first|deliver-first] [--queue Q]]
//
// rtt: a ping-pong of `payload` bytes between two processes over an AF_UNIX
// SOCK_SEQPACKET socket pair ("seqpacket"), the same through a relay
// process that forwards each way, as any broker must (client -> relay ->
// server -> relay -> client; "seqpacket-relay" is the floor of every
// broker's round trip, "stream-relay" the same with SOCK_STREAM, kbus's
// transport), the same with a relay that multiplexes as a daemon must
// (epoll_wait, then a non-blocking recv: "epoll-..."), and POSIX message
// queues (two queues, "mq").
//
// tput: one sender -> relay -> L listeners over SOCK_SEQPACKET, one message
// per send()/recv(), with the kernel's back-pressure (nothing is lost): the
// floor of a broker that handles one message per system call.
//
// The acked relay: the least a broker must do when every call is a round
// trip to it, as kbus's generic calls are (send returns the id the daemon
// assigns; wait+read asks the daemon for the next message). Its protocol,
// over SOCK_SEQPACKET: a client sends SEND ('S' + message) and the relay
// answers with an 8-byte id and queues the message for the other client(s);
// a client sends WAIT ('W') and the relay answers with the next message
// queued for it, as soon as there is one. Nothing else: no header, no
// routing, no copy but into a queue slot when the recipient is not waiting.
//
//   rtt --transport acked-relay: a request/reply through these calls.
//       Requester: SEND(request) -> id, WAIT -> reply; replier: WAIT ->
//       request, SEND(reply) -> id; 8 datagrams per round trip where the
//       seqpacket relay needs 4. The relay blocks in recv() on the client
//       whose datagram comes next (it knows the script, as the seqpacket
//       relay does): the same relay, only the calls differ.
//   rtt --transport acked-relay-epoll: the same calls through a relay built
//       as a daemon must be: epoll_wait(), a non-blocking recv() from each
//       ready client, a queue per client, a WAIT parked until a message
//       comes.
//   tput --acked push|pull: the sender makes one SEND -> id round trip per
//       message; the relay forwards to L listeners, which either just
//       recv() what it pushes ("push") or ask for every message with a WAIT
//       ("pull", as kbus's one-per-call listeners do). --relay blocking:
//       the relay blocks in recv() on the sender, then (pull) on each
//       listener's WAIT in turn; --relay epoll: the daemon-shaped relay
//       above. Back-pressure, never a drop: a push waits in send() for room
//       in the listener's socket; a pull relay stops reading the sender (so
//       its SEND is not answered) while a listener has --queue messages
//       queued (default 100 000, as kbus's benchmark listeners).
//   --order: the relay answers a SEND before it hands the message on
//       (ack-first, the default) or after (deliver-first).
#include <mqueue.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "bench_common.hpp"

namespace {

using namespace bench;

void sock_pair(int type, int fds[2]) {
  if (::socketpair(AF_UNIX, type, 0, fds) != 0) die("socketpair");
}

// Moves one message of `len` bytes from `from` to `to` (a datagram for
// SOCK_SEQPACKET, exactly len bytes for SOCK_STREAM).
bool forward(int from, int to, char* buf, std::size_t len, bool stream) {
  if (stream) return read_full(from, buf, len) && write_full(to, buf, len);
  ssize_t n = ::recv(from, buf, len, 0);
  if (n <= 0) return false;
  return ::send(to, buf, static_cast<std::size_t>(n), 0) == n;
}

// The relay of a daemon that serves many clients: it cannot block in read()
// on one of them, so it waits in epoll_wait() and then reads without
// blocking - two system calls per message received instead of one. (For a
// stream, a message may arrive in pieces; the relay forwards whatever it
// reads, which the client's read_full() puts together.)
void epoll_relay(int x, int y, std::size_t len) {
  const int ep = ::epoll_create1(0);
  for (int fd : {x, y}) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  std::vector<char> buf(len);
  epoll_event evs[2];
  for (;;) {
    const int n = ::epoll_wait(ep, evs, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    for (int i = 0; i < n; ++i) {
      const int from = evs[i].data.fd, to = from == x ? y : x;
      ssize_t got = ::recv(from, buf.data(), len, 0);
      if (got == 0) return;
      if (got < 0) continue;
      // The peer is waiting for this message: its buffer has room.
      if (!write_full(to, buf.data(), static_cast<std::size_t>(got))) return;
    }
  }
}

Row rtt_sockets(const std::string& transport, long payload, long iterations) {
  const bool stream = transport.rfind("stream", 0) == 0 || transport == "epoll-stream-relay";
  const bool relay = transport != "seqpacket";
  const bool epoll = transport.rfind("epoll-", 0) == 0;
  const int type = stream ? SOCK_STREAM : SOCK_SEQPACKET;
  int a[2], b[2] = {-1, -1};
  sock_pair(type, a);  // client <-> relay (or server)
  if (relay) sock_pair(type, b);
  std::vector<pid_t> kids;
  const auto len = static_cast<std::size_t>(payload);
  if (relay) {
    kids.push_back(spawn([&] {
      ::close(a[0]);
      ::close(b[1]);
      if (epoll) {
        epoll_relay(a[1], b[0], len);
        return;
      }
      std::vector<char> buf(len);
      while (forward(a[1], b[0], buf.data(), len, stream) &&
             forward(b[0], a[1], buf.data(), len, stream)) {
      }
    }));
  }
  const int server_end = relay ? b[1] : a[1];
  kids.push_back(spawn([&] {
    ::close(a[0]);
    if (relay) {
      ::close(a[1]);
      ::close(b[0]);
    }
    std::vector<char> buf(len);
    while (forward(server_end, server_end, buf.data(), len, stream)) {
    }
  }));
  ::close(a[1]);
  if (relay) {
    ::close(b[0]);
    ::close(b[1]);
  }
  std::vector<char> out(len, 'x'), in(len);
  Summary s = time_round_trips(iterations, [&] {
    if (stream) {
      write_full(a[0], out.data(), len);
      read_full(a[0], in.data(), len);
    } else {
      ::send(a[0], out.data(), len, 0);
      ::recv(a[0], in.data(), len, 0);
    }
  });
  ::close(a[0]);
  for (pid_t k : kids) wait_child(k);
  Row r;
  r.system = transport == "seqpacket"              ? "AF_UNIX seqpacket direct"
             : transport == "stream-relay"         ? "AF_UNIX stream relay"
             : transport == "epoll-stream-relay"   ? "AF_UNIX stream relay, epoll"
             : transport == "epoll-seqpacket-relay" ? "AF_UNIX seqpacket relay, epoll"
                                                   : "AF_UNIX seqpacket relay (floor)";
  r.test = "round trip";
  r.payload = payload;
  r.lat = s;
  return r;
}

Row rtt_mq(long payload, long iterations) {
  const std::string qa = "/kbus-bench-a-" + std::to_string(::getpid());
  const std::string qb = "/kbus-bench-b-" + std::to_string(::getpid());
  mq_attr attr{};
  attr.mq_maxmsg = 8;
  attr.mq_msgsize = std::max<long>(payload, 64);
  mqd_t to_server = mq_open(qa.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600, &attr);
  mqd_t to_client = mq_open(qb.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600, &attr);
  if (to_server == static_cast<mqd_t>(-1) || to_client == static_cast<mqd_t>(-1)) {
    const std::string why = std::strerror(errno);
    mq_unlink(qa.c_str());
    mq_unlink(qb.c_str());
    Row r;
    r.system = "POSIX mqueue";
    r.test = "round trip";
    r.payload = payload;
    r.note = "not available: mq_open: " + why;
    return r;
  }
  const auto len = static_cast<std::size_t>(payload);
  const auto cap = static_cast<std::size_t>(attr.mq_msgsize);
  pid_t server = spawn([&] {
    std::vector<char> buf(cap);
    for (;;) {
      ssize_t n = mq_receive(to_server, buf.data(), cap, nullptr);
      if (n <= 0) break;
      if (n == 1 && buf[0] == 'q') break;
      if (mq_send(to_client, buf.data(), static_cast<std::size_t>(n), 0) != 0) break;
    }
  });
  std::vector<char> out(len, 'x'), in(cap);
  Summary s = time_round_trips(iterations, [&] {
    mq_send(to_server, out.data(), len, 0);
    mq_receive(to_client, in.data(), cap, nullptr);
  });
  mq_send(to_server, "q", 1, 0);
  wait_child(server);
  mq_close(to_server);
  mq_close(to_client);
  mq_unlink(qa.c_str());
  mq_unlink(qb.c_str());
  Row r;
  r.system = "POSIX mqueue";
  r.test = "round trip";
  r.payload = payload;
  r.lat = s;
  return r;
}

Row tput_relay(int listeners, long payload, long messages) {
  const auto len = static_cast<std::size_t>(payload);
  int in[2];
  sock_pair(SOCK_SEQPACKET, in);  // sender -> relay
  std::vector<std::array<int, 2>> outs(static_cast<std::size_t>(listeners));
  for (auto& o : outs) {
    int fds[2];
    sock_pair(SOCK_SEQPACKET, fds);
    o = {fds[0], fds[1]};
  }
  pid_t relay = -1;
  TputSpec spec;
  spec.system = "AF_UNIX seqpacket relay (floor)";
  spec.test = "fan-out";
  spec.payload = payload;
  spec.listeners = listeners;
  spec.messages = messages;
  TputHooks h;
  std::vector<char> msg(len, 'x');
  h.sender_setup = [&] {
    relay = spawn([&] {
      ::close(in[0]);
      for (auto& o : outs) ::close(o[1]);
      std::vector<char> buf(len);
      for (;;) {
        ssize_t n = ::recv(in[1], buf.data(), len, 0);
        if (n <= 0) break;
        for (auto& o : outs) ::send(o[0], buf.data(), static_cast<std::size_t>(n), 0);
      }
    });
    ::close(in[1]);
  };
  h.listen = [&](int i, int ready_fd, ListenerCounter& counter, int) {
    ::close(in[0]);
    const int fd = outs[static_cast<std::size_t>(i)][1];
    for (auto& o : outs) {
      ::close(o[0]);
      if (o[1] != fd) ::close(o[1]);
    }
    write_full(ready_fd, "r", 1);
    std::vector<char> buf(len);
    for (;;) {
      ssize_t n = ::recv(fd, buf.data(), len, 0);
      if (n <= 0 || !counter.on_msg(buf.data(), static_cast<std::size_t>(n))) break;
    }
  };
  h.send = [&](std::uint64_t seq) {
    set_seq(msg.data(), seq);
    ::send(in[0], msg.data(), len, 0);
  };
  h.sender_teardown = [&] {
    ::close(in[0]);
    wait_child(relay);
  };
  // The sender keeps no listener ends open, so listeners see EOF if it dies.
  Row r = run_throughput(spec, h);
  for (auto& o : outs) {
    ::close(o[0]);
    ::close(o[1]);
  }
  return r;
}

// ---------------------------------------------------------------- acked relay

constexpr char kSendTag = 'S', kWaitTag = 'W';

enum class Order { ack_first, deliver_first };

bool dgram_send(int fd, const void* p, std::size_t n) {
  for (;;) {
    const ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    return r == static_cast<ssize_t>(n);
  }
}

ssize_t dgram_recv(int fd, void* p, std::size_t n, int flags = 0) {
  for (;;) {
    const ssize_t r = ::recv(fd, p, n, flags);
    if (r < 0 && errno == EINTR) continue;
    return r;
  }
}

// A client's round trip to the relay: one datagram out, one back.
bool call(int fd, const void* out, std::size_t out_len, void* in, std::size_t in_cap) {
  return dgram_send(fd, out, out_len) && dgram_recv(fd, in, in_cap) > 0;
}

// The acked relay of a request/reply, blocking in recv() on whichever
// client's datagram the script says comes next (as the seqpacket relay
// does): a = requester, b = replier.
void acked_relay_scripted(int a, int b, std::size_t len, Order order) {
  std::vector<char> req(len + 1), rep(len + 1);
  char w[8];
  std::uint64_t id = 0;
  const bool ack_first = order == Order::ack_first;
  for (;;) {
    // The requester's SEND; the replier's WAIT (already there, or coming).
    const ssize_t n = dgram_recv(a, req.data(), req.size());
    if (n <= 0 || req[0] != kSendTag) return;
    ++id;
    if (ack_first && !dgram_send(a, &id, sizeof id)) return;
    if (dgram_recv(b, w, sizeof w) <= 0) return;
    if (!dgram_send(b, req.data() + 1, static_cast<std::size_t>(n - 1))) return;
    if (!ack_first && !dgram_send(a, &id, sizeof id)) return;
    // The replier's SEND; the requester's WAIT.
    const ssize_t m = dgram_recv(b, rep.data(), rep.size());
    if (m <= 0 || rep[0] != kSendTag) return;
    ++id;
    if (ack_first && !dgram_send(b, &id, sizeof id)) return;
    if (dgram_recv(a, w, sizeof w) <= 0) return;
    if (!dgram_send(a, rep.data() + 1, static_cast<std::size_t>(m - 1))) return;
    if (!ack_first && !dgram_send(b, &id, sizeof id)) return;
  }
}

// The acked relay built as a daemon must be: epoll_wait(), then a
// non-blocking recv() from each ready client. A SEND is answered with an id
// and its message handed to each destination: pushed at once to a push
// client; to a pull client, sent if it is parked in a WAIT, else queued.
// A WAIT is answered from the client's queue, or parked. While any of a
// sender's destinations has `cap` messages queued, the relay stops reading
// that sender (its SEND waits for its id): back-pressure, never a drop.
// Sends to clients block (a push waits for room; a pull client is waiting
// for the answer, so there is room).
class AckedBroker {
 public:
  struct Client {
    int fd = -1;
    bool pull = true;        // asks with WAIT (else: pushed to)
    bool quit_on_eof = false;
    std::vector<int> dests;  // where its SENDs go
  };

  AckedBroker(std::vector<Client> clients, std::size_t len, std::size_t cap, Order order)
      : len_(len), cap_(std::max<std::size_t>(cap, 1)), order_(order) {
    for (auto& c : clients) {
      State st;
      st.c = c;
      cl_.push_back(std::move(st));
    }
  }

  void run() {
    ep_ = ::epoll_create1(0);
    if (ep_ < 0) die("epoll_create1");
    for (std::size_t i = 0; i < cl_.size(); ++i) {
      State& s = cl_[i];
      // A push client never sends; a SEND to a closed one fails (EPIPE).
      if (!s.c.pull && s.c.dests.empty()) continue;
      if (s.c.pull) s.slots.resize(cap_ * len_), s.lens.resize(cap_);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = static_cast<std::uint32_t>(i);
      if (::epoll_ctl(ep_, EPOLL_CTL_ADD, s.c.fd, &ev) != 0) die("epoll_ctl");
      s.watched = true;
    }
    std::vector<char> buf(len_ + 1);
    std::vector<epoll_event> evs(cl_.size());
    for (;;) {
      const int n = ::epoll_wait(ep_, evs.data(), static_cast<int>(evs.size()), -1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      for (int e = 0; e < n; ++e) {
        const std::uint32_t i = evs[static_cast<std::size_t>(e)].data.u32;
        State& s = cl_[i];
        if (!s.alive || !s.watched) continue;  // closed or blocked meanwhile
        const ssize_t got = dgram_recv(s.c.fd, buf.data(), buf.size(), MSG_DONTWAIT);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (got <= 0) {
          if (s.c.quit_on_eof) return;
          gone(i);
          continue;
        }
        if (buf[0] == kWaitTag) {
          if (s.count) {
            if (!dgram_send(s.c.fd, &s.slots[s.head * len_], s.lens[s.head])) {
              gone(i);
              continue;
            }
            s.head = (s.head + 1) % cap_;
            if (s.count-- == cap_) unblock();
          } else {
            s.waiting = true;
          }
        } else if (buf[0] == kSendTag) {
          ++id_;
          if (order_ == Order::ack_first && !dgram_send(s.c.fd, &id_, sizeof id_)) {
            gone(i);
            continue;
          }
          bool full = false;
          for (int d : s.c.dests)
            full = deliver(static_cast<std::size_t>(d), buf.data() + 1,
                           static_cast<std::size_t>(got - 1)) || full;
          if (order_ == Order::deliver_first && !dgram_send(s.c.fd, &id_, sizeof id_)) {
            gone(i);
            continue;
          }
          if (full) watch(i, false);
        }
      }
    }
  }

 private:
  struct State {
    Client c;
    bool alive = true, waiting = false, watched = false;
    std::vector<char> slots;  // cap messages of len bytes (pull clients)
    std::vector<std::size_t> lens;
    std::size_t head = 0, count = 0;
  };

  // Returns true if d's queue is now full.
  bool deliver(std::size_t d, const char* p, std::size_t n) {
    State& t = cl_[d];
    if (!t.alive) return false;
    if (!t.c.pull || t.waiting) {
      t.waiting = false;
      if (!dgram_send(t.c.fd, p, n)) gone(d);
      return false;
    }
    const std::size_t slot = (t.head + t.count) % cap_;
    std::memcpy(&t.slots[slot * len_], p, n);
    t.lens[slot] = n;
    return ++t.count == cap_;
  }

  void watch(std::size_t i, bool on) {
    State& s = cl_[i];
    if (s.watched == on || !s.alive) return;
    epoll_event ev{};
    ev.events = on ? static_cast<std::uint32_t>(EPOLLIN) : 0u;
    ev.data.u32 = static_cast<std::uint32_t>(i);
    ::epoll_ctl(ep_, EPOLL_CTL_MOD, s.c.fd, &ev);
    s.watched = on;
  }

  // Reads again from every sender none of whose destinations is full.
  void unblock() {
    for (std::size_t i = 0; i < cl_.size(); ++i) {
      State& s = cl_[i];
      if (s.watched || !s.alive || s.c.dests.empty()) continue;
      bool full = false;
      for (int d : s.c.dests) {
        const State& t = cl_[static_cast<std::size_t>(d)];
        full = full || (t.alive && t.c.pull && t.count == cap_);
      }
      if (!full) watch(i, true);
    }
  }

  void gone(std::size_t i) {
    State& s = cl_[i];
    if (!s.alive) return;
    if (s.watched) ::epoll_ctl(ep_, EPOLL_CTL_DEL, s.c.fd, nullptr);
    s.alive = s.watched = s.waiting = false;
    s.count = 0;
    unblock();
  }

  std::vector<State> cl_;
  std::size_t len_, cap_;
  Order order_;
  int ep_ = -1;
  std::uint64_t id_ = 0;
};

Row rtt_acked(bool epoll, long payload, long iterations, Order order) {
  const auto len = static_cast<std::size_t>(payload);
  int a[2], b[2];
  sock_pair(SOCK_SEQPACKET, a);  // requester <-> relay
  sock_pair(SOCK_SEQPACKET, b);  // replier <-> relay
  std::vector<pid_t> kids;
  kids.push_back(spawn([&] {
    ::close(a[0]);
    ::close(b[1]);
    if (epoll) {
      AckedBroker::Client req{a[1], true, true, {1}}, rep{b[0], true, true, {0}};
      AckedBroker({req, rep}, len, 16, order).run();
    } else {
      acked_relay_scripted(a[1], b[0], len, order);
    }
  }));
  kids.push_back(spawn([&] {
    ::close(a[0]);
    ::close(a[1]);
    ::close(b[0]);
    const int fd = b[1];
    std::vector<char> in(len), out(len + 1);
    out[0] = kSendTag;
    const char w = kWaitTag;
    std::uint64_t id;
    for (;;) {
      const ssize_t n = (dgram_send(fd, &w, 1) ? dgram_recv(fd, in.data(), len) : -1);
      if (n <= 0) break;
      std::memcpy(out.data() + 1, in.data(), static_cast<std::size_t>(n));
      if (!call(fd, out.data(), static_cast<std::size_t>(n) + 1, &id, sizeof id)) break;
    }
  }));
  ::close(a[1]);
  ::close(b[0]);
  ::close(b[1]);
  const int fd = a[0];
  std::vector<char> out(len + 1, 'x'), in(len);
  out[0] = kSendTag;
  const char w = kWaitTag;
  long bad = 0;
  Summary s = time_round_trips(iterations, [&] {
    std::uint64_t id;
    if (!call(fd, out.data(), len + 1, &id, sizeof id) || !call(fd, &w, 1, in.data(), len)) ++bad;
  });
  ::close(fd);
  for (pid_t k : kids) wait_child(k);
  Row r;
  r.system = epoll ? "AF_UNIX acked relay, epoll" : "AF_UNIX acked relay (call floor)";
  r.test = "round trip";
  r.payload = payload;
  r.lat = s;
  if (order == Order::deliver_first) r.note = "relay delivers before it answers the SEND";
  if (bad) r.note = "failed: " + std::to_string(bad);
  return r;
}

// One sender -> acked relay -> L listeners; the sender's every message is a
// SEND -> id round trip; listeners push or pull.
Row tput_acked(int listeners, long payload, long messages, bool pull, bool epoll, Order order,
               long queue) {
  const auto len = static_cast<std::size_t>(payload);
  int in[2];
  sock_pair(SOCK_SEQPACKET, in);  // sender <-> relay
  std::vector<std::array<int, 2>> outs(static_cast<std::size_t>(listeners));
  for (auto& o : outs) {
    int fds[2];
    sock_pair(SOCK_SEQPACKET, fds);
    o = {fds[0], fds[1]};  // relay end, listener end
  }
  pid_t relay = -1;
  TputSpec spec;
  spec.system = epoll ? "AF_UNIX acked relay, epoll" : "AF_UNIX acked relay (call floor)";
  spec.test = pull ? "fan-out, one per call, pull" : "fan-out, one per call, push";
  spec.payload = payload;
  spec.listeners = listeners;
  spec.messages = messages;
  TputHooks h;
  std::vector<char> msg(len + 1, 'x');
  msg[0] = kSendTag;
  h.sender_setup = [&] {
    relay = spawn([&] {
      ::close(in[0]);
      for (auto& o : outs) ::close(o[1]);
      if (epoll) {
        std::vector<AckedBroker::Client> cl;
        AckedBroker::Client snd{in[1], false, true, {}};
        for (int i = 0; i < listeners; ++i) snd.dests.push_back(i + 1);
        cl.push_back(snd);
        for (auto& o : outs) cl.push_back(AckedBroker::Client{o[0], pull, false, {}});
        AckedBroker(std::move(cl), len, static_cast<std::size_t>(queue), order).run();
        return;
      }
      std::vector<char> buf(len + 1);
      std::vector<bool> alive(outs.size(), true);
      const bool ack_first = order == Order::ack_first;
      std::uint64_t id = 0;
      char w[8];
      for (;;) {
        const ssize_t n = dgram_recv(in[1], buf.data(), buf.size());
        if (n <= 0 || buf[0] != kSendTag) break;
        ++id;
        if (ack_first && !dgram_send(in[1], &id, sizeof id)) break;
        for (std::size_t i = 0; i < outs.size(); ++i) {
          if (!alive[i]) continue;
          if (pull && dgram_recv(outs[i][0], w, sizeof w) <= 0) {
            alive[i] = false;
            continue;
          }
          if (!dgram_send(outs[i][0], buf.data() + 1, static_cast<std::size_t>(n - 1)))
            alive[i] = false;
        }
        if (!ack_first && !dgram_send(in[1], &id, sizeof id)) break;
      }
    });
    ::close(in[1]);
    for (auto& o : outs) {
      ::close(o[0]);
      o[0] = -1;
    }
  };
  h.listen = [&](int i, int ready_fd, ListenerCounter& counter, int idle_ms) {
    ::close(in[0]);
    const int fd = outs[static_cast<std::size_t>(i)][1];
    for (auto& o : outs)
      if (o[1] != fd) ::close(o[1]);
    // A listener that gets nothing for idle_ms stops (so a bug cannot hang
    // the run): a receive timeout, not an extra system call per message.
    timeval tv{idle_ms / 1000, (idle_ms % 1000) * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    write_full(ready_fd, "r", 1);
    std::vector<char> buf(len);
    const char w = kWaitTag;
    for (;;) {
      if (pull && !dgram_send(fd, &w, 1)) break;
      const ssize_t n = dgram_recv(fd, buf.data(), len);
      if (n <= 0 || !counter.on_msg(buf.data(), static_cast<std::size_t>(n))) break;
    }
  };
  long bad = 0;
  h.send = [&](std::uint64_t seq) {
    if (!outs.empty() && outs[0][1] >= 0) {
      // Every listener has its end now; without our copies, a relay that
      // waits for the WAIT of a listener that has stopped sees EOF.
      for (auto& o : outs) {
        ::close(o[1]);
        o[1] = -1;
      }
    }
    set_seq(msg.data() + 1, seq);
    std::uint64_t id;
    if (!call(in[0], msg.data(), len + 1, &id, sizeof id)) ++bad;
  };
  h.sender_teardown = [&] {
    ::close(in[0]);
    wait_child(relay);
  };
  Row r = run_throughput(spec, h);
  for (auto& o : outs) {
    if (o[0] >= 0) ::close(o[0]);
    if (o[1] >= 0) ::close(o[1]);
  }
  if (bad) r.note = (r.note.empty() ? "" : r.note + "; ") + "failed sends: " + std::to_string(bad);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Args args(argc, argv);
  const long payload = std::max(8L, args.num("payload", 64));
  const std::string order_s = args.str("order", "ack-first");
  if (order_s != "ack-first" && order_s != "deliver-first") {
    std::fprintf(stderr, "kbus_bench_raw: --order ack-first|deliver-first\n");
    return 2;
  }
  const Order order = order_s == "ack-first" ? Order::ack_first : Order::deliver_first;
  if (args.cmd() == "rtt") {
    const std::string t = args.str("transport", "seqpacket-relay");
    const long iterations = args.num("iterations", 20000);
    if (t == "acked-relay" || t == "acked-relay-epoll")
      emit(rtt_acked(t == "acked-relay-epoll", payload, iterations, order));
    else
      emit(t == "mq" ? rtt_mq(payload, iterations) : rtt_sockets(t, payload, iterations));
    return 0;
  }
  if (args.cmd() == "tput") {
    const int listeners = static_cast<int>(args.num("listeners", 1));
    const long messages = args.num("messages", 200000);
    if (args.has("acked")) {
      const std::string how = args.str("acked"), relay = args.str("relay", "blocking");
      if ((how != "push" && how != "pull") || (relay != "blocking" && relay != "epoll")) {
        std::fprintf(stderr, "kbus_bench_raw: --acked push|pull [--relay blocking|epoll]\n");
        return 2;
      }
      emit(tput_acked(listeners, payload, messages, how == "pull", relay == "epoll", order,
                      std::max(1L, args.num("queue", 100000))));
      return 0;
    }
    emit(tput_relay(listeners, payload, messages));
    return 0;
  }
  std::fprintf(stderr,
               "usage: kbus_bench_raw rtt --transport seqpacket|seqpacket-relay|stream-relay|"
               "epoll-seqpacket-relay|epoll-stream-relay|mq|acked-relay|acked-relay-epoll "
               "[--payload B] [--iterations N] [--order ack-first|deliver-first]\n"
               "       kbus_bench_raw tput --listeners L [--payload B] [--messages M] "
               "[--acked push|pull [--relay blocking|epoll] [--order ack-first|deliver-first] "
               "[--queue Q]]\n");
  return 2;
}
