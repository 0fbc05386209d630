// kbus_bench_raw: the floors, with nothing but the kernel in between.
//
//   kbus_bench_raw rtt --transport seqpacket|seqpacket-relay|stream-relay|
//                                  epoll-seqpacket-relay|epoll-stream-relay|mq
//                      [--payload B] [--iterations N]
//   kbus_bench_raw tput --listeners L [--payload B] [--messages M]
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

}  // namespace

int main(int argc, char** argv) {
  Args args(argc, argv);
  const long payload = std::max(8L, args.num("payload", 64));
  if (args.cmd() == "rtt") {
    const std::string t = args.str("transport", "seqpacket-relay");
    const long iterations = args.num("iterations", 20000);
    emit(t == "mq" ? rtt_mq(payload, iterations) : rtt_sockets(t, payload, iterations));
    return 0;
  }
  if (args.cmd() == "tput") {
    emit(tput_relay(static_cast<int>(args.num("listeners", 1)), payload,
                    args.num("messages", 200000)));
    return 0;
  }
  std::fprintf(stderr,
               "usage: kbus_bench_raw rtt --transport seqpacket|seqpacket-relay|stream-relay|"
               "epoll-seqpacket-relay|epoll-stream-relay|mq "
               "[--payload B] [--iterations N]\n"
               "       kbus_bench_raw tput --listeners L [--payload B] [--messages M]\n");
  return 2;
}
