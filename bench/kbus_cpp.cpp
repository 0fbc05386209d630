// kbus_bench_kbus: kbus through the C++ client (kbus::Ksock), against a
// kbusd that bench/run.py started (--dir DIR, bus 0).
//
//   rtt      --dir D [--payload B] [--iterations N] --calls request|generic
//            request/reply round trip. request: Ksock::request() against a
//            replier looping on send_and_wait(); generic: send_msg() then
//            wait_for_msg() on both sides.
//   tput     --dir D --listeners L [--payload B] [--messages M] [--batch B]
//            [--recv-batch R] [--queue Q]
//            announcements, 1 sender -> L listeners. --batch 1: send_msg()
//            and wait_for_msg(), one message per call; --batch B > 1:
//            send_msgs() of B messages and wait_for_msgs(1024); --recv-batch
//            sets the listeners' count apart (wait_for_msgs(R)). Sends are
//            ALL_OR_WAIT and listener queues are raised (set_max_messages(Q),
//            default 100 000), so a full queue makes the sender wait:
//            nothing may be lost.
//   bindings --dir D [--bindings 10,10000,100000] [--sends S] [--rounds R]
//            cost of one send_msg() (its round trip) with N other bindings
//            on a fresh bus per N (different names; every 10th a '*'
//            wildcard, every 10th a '%' wildcard, some replier bindings);
//            the buses take turns in R rounds.
//   fanout   --dir D [--listeners 1000] [--procs 4] [--latency-msgs K] [--messages M]
//            1 sender -> 1000 listener Ksocks in 4 processes: the time until
//            the last of them has one announcement, and the throughput.
//   memory   --dir D --daemon-pid P [--ksocks 10000] [--messages 50000]
//            kbusd VmRSS before/after opening idle Ksocks, and before/after
//            queueing messages.
#include <dirent.h>
#include <poll.h>

#include <fstream>
#include <optional>

#include "bench_common.hpp"
#include "kbus/ksock.hpp"

namespace {

using namespace bench;
using kbus::Ksock;
using kbus::Message;
using std::chrono::milliseconds;

std::string g_dir;

Ksock open_ksock(int bus = 0) { return Ksock::open(bus, kbus::Mode::read_write, g_dir); }

// ---------------------------------------------------------------- rtt

Row rtt(long payload, long iterations, bool request_calls) {
  Pipe ready;
  pid_t replier = spawn([&] {
    auto k = open_ksock();
    k.bind("$.Bench.Echo", true);
    write_full(ready.w, "r", 1);
    if (request_calls) {
      auto m = k.wait_for_msg();
      for (;;) {
        auto rep = kbus::make_reply(*m, m->data);
        auto r = k.try_send_and_wait(*rep);
        if (!r) break;
        m = std::move(r->received);
        if (!m) break;
      }
      return;
    }
    for (;;) {
      auto m = k.try_wait_for_msg();
      if (!m) break;
      if (!*m) continue;
      auto rep = kbus::make_reply(**m, (*m)->data);
      if (rep.ok() && !k.try_send_msg(*rep)) break;
    }
  });
  char c;
  read_full(ready.r, &c, 1);
  auto k = open_ksock();
  const Message req = kbus::make_request("$.Bench.Echo", std::string(static_cast<std::size_t>(payload), 'x'));
  long bad = 0;
  Summary s = time_round_trips(iterations, [&] {
    if (request_calls) {
      if (!k.try_request(req)) ++bad;
      return;
    }
    auto id = k.try_send_msg(req);
    if (!id) {
      ++bad;
      return;
    }
    for (;;) {
      auto m = k.wait_for_msg();
      if (m && m->hdr.in_reply_to == *id) break;
    }
  });
  k.close();
  stop_child(replier);
  Row r;
  r.system = request_calls ? "kbus C++ request()" : "kbus C++ send+wait+read";
  r.test = "round trip";
  r.payload = payload;
  r.lat = s;
  if (bad) r.note = "failed: " + std::to_string(bad);
  return r;
}

// ---------------------------------------------------------------- tput

struct Sender {
  Ksock k;
  long waits = 0, failures = 0;

  // Sends msgs[from..] in order (a batch when there are several), waiting
  // for room whenever a listener's queue is full (ALL_OR_WAIT -> EAGAIN:
  // the message is pending and kbusd delivers it when room appears).
  void send_all(const std::vector<Message>& msgs) {
    if (msgs.size() == 1) {
      auto r = k.try_send_msg(msgs[0]);
      if (!r) after_failure(r.error());
      return;
    }
    std::size_t done = 0;
    std::vector<Message> rest;
    const std::vector<Message>* cur = &msgs;
    for (;;) {
      auto b = k.try_send_msgs(*cur);
      done += b.ids.size();
      if (b.error == kbus::Errc::ok) return;
      after_failure(b.error);
      if (done >= msgs.size()) return;
      rest.assign(msgs.begin() + static_cast<long>(done), msgs.end());
      cur = &rest;
    }
  }
  void after_failure(kbus::Errc e) {
    if (e == kbus::Errc::eagain) {
      ++waits;
      k.wait(kbus::ready::kWritable);
    } else {
      ++failures;
      std::fprintf(stderr, "bench kbus: send failed: errno %d\n", static_cast<int>(e));
    }
  }
};

Row tput(int listeners, long payload, long messages, int batch, int recv_batch,
         std::uint32_t queue, const std::string& label) {
  const auto len = static_cast<std::size_t>(payload);
  std::optional<Sender> sender;
  std::vector<Message> pending;
  Message proto = kbus::make_announcement("$.Bench.Tick", std::string(len, 'x'), kbus::flag::kAllOrWait);
  TputSpec spec;
  spec.system = label;
  spec.test = batch > 1        ? "fan-out, batch calls"
              : recv_batch > 1 ? "fan-out, send one, read batch"
                               : "fan-out, one per call";
  spec.payload = payload;
  spec.listeners = listeners;
  spec.messages = messages;
  TputHooks h;
  h.listen = [&](int, int ready_fd, ListenerCounter& counter, int idle_ms) {
    auto k = open_ksock();
    k.set_max_messages(queue);
    k.bind("$.Bench.Tick");
    write_full(ready_fd, "r", 1);
    const auto idle = milliseconds(idle_ms);
    if (recv_batch == 1) {
      for (;;) {
        auto m = k.wait_for_msg(idle);
        if (!m || !counter.on_msg(m->data.data(), m->data.size())) break;
      }
      return;
    }
    for (;;) {
      auto ms = k.wait_for_msgs(static_cast<std::uint32_t>(recv_batch), idle);
      if (ms.empty()) break;
      bool more = true;
      for (const Message& m : ms) more = more && counter.on_msg(m.data.data(), m.data.size());
      if (!more) break;
    }
  };
  h.sender_setup = [&] {};
  h.send = [&](std::uint64_t seq) {
    if (!sender) sender.emplace(Sender{open_ksock()});
    pending.push_back(proto);
    set_seq(pending.back().data.data(), seq);
    if (static_cast<int>(pending.size()) >= batch) {
      sender->send_all(pending);
      pending.clear();
    }
  };
  h.flush = [&] {
    if (!pending.empty()) sender->send_all(pending);
    pending.clear();
  };
  h.sender_teardown = [&] {};
  Row r = run_throughput(spec, h);
  if (sender) {
    std::string n;
    if (sender->waits) n = "a full queue made the sender wait " + std::to_string(sender->waits) + "x (ALL_OR_WAIT)";
    if (sender->failures) n += (n.empty() ? "" : ", ") + std::string("failed sends ") + std::to_string(sender->failures);
    if (!n.empty()) r.note = r.note.empty() ? n : r.note + "; " + n;
    sender->k.close();
  }
  return r;
}

// ---------------------------------------------------------------- bindings

// One fresh bus per binding count, all set up first; then the timed sends
// go round the buses in turn (`rounds` slices of sends/rounds each), so that
// a change of load on the machine hits every count alike. p50 = the best
// (lowest) of the rounds' p50s, as bench/run.py does; p99 over all sends.
std::vector<Row> bindings(const std::vector<long>& counts, long sends, int rounds) {
  struct Setup {
    long n;
    Ksock binder, listener, sender;
    std::vector<double> all;
    std::vector<double> p50s;
  };
  auto control = open_ksock();
  std::vector<Setup> setups;
  for (long n : counts) {
    const int bus = static_cast<int>(control.new_device());
    Setup su{n, open_ksock(bus), open_ksock(bus), open_ksock(bus), {}, {}};
    for (long i = 0; i < n; ++i) {
      const std::string base = "$.Other" + std::to_string(i % 997) + ".N" + std::to_string(i);
      const std::string name = (i % 10 == 0) ? base + ".*" : (i % 10 == 1) ? base + ".%" : base;
      su.binder.bind(name, i % 3 == 0 && i % 10 > 1);
    }
    su.listener.set_max_messages(4096);
    su.listener.bind("$.Sensors.Kitchen.Temperature");
    su.listener.bind("$.Sensors.*");
    setups.push_back(std::move(su));
  }
  const Message m = kbus::make_announcement("$.Sensors.Kitchen.Temperature", "21.5");
  auto drain = [](Ksock& l) {
    while (!l.read_msgs(1024).empty()) {
    }
  };
  for (Setup& su : setups) {  // warm-up
    for (long i = 0; i < 1000; ++i) su.sender.send_msg(m);
    drain(su.listener);
  }
  const long per_round = std::max(1L, sends / rounds);
  for (int r = 0; r < rounds; ++r) {
    for (Setup& su : setups) {
      std::vector<double> ns;
      ns.reserve(static_cast<std::size_t>(per_round));
      for (long i = 0; i < per_round; ++i) {
        const std::uint64_t t0 = now_ns();
        su.sender.send_msg(m);
        ns.push_back(static_cast<double>(now_ns() - t0));
        if (i % 500 == 499) drain(su.listener);
      }
      drain(su.listener);
      su.p50s.push_back(summarise(ns).p50_us);
      su.all.insert(su.all.end(), ns.begin(), ns.end());
    }
  }
  std::vector<Row> rows;
  for (Setup& su : setups) {
    Row r;
    r.system = "kbus C++ send_msg()";
    r.test = "send with " + std::to_string(su.n) + " bindings";
    r.payload = 4;
    r.lat = summarise(su.all);
    r.lat.p50_us = *std::min_element(su.p50s.begin(), su.p50s.end());
    r.value = static_cast<double>(su.n);
    r.unit = "bindings";
    rows.push_back(r);
  }
  return rows;
}

// ---------------------------------------------------------------- fanout

struct FanAck {
  std::uint64_t seq, t;
};

void fan_listener(int nks, long lat_msgs, long messages, int ready_fd, int ack_fd, int idle_ms) {
  std::vector<Ksock> ks;
  std::vector<pollfd> pfds;
  for (int i = 0; i < nks; ++i) {
    ks.push_back(open_ksock());
    ks.back().set_max_messages(static_cast<std::uint32_t>(messages + lat_msgs + 16));
    ks.back().bind("$.Bench.Fan");
    pfds.push_back({ks.back().fileno(), POLLIN, 0});
  }
  write_full(ready_fd, "r", 1);
  std::vector<int> count(static_cast<std::size_t>(lat_msgs + messages + 1), 0);
  const std::uint64_t want = static_cast<std::uint64_t>(nks) * static_cast<std::uint64_t>(messages);
  std::uint64_t bulk = 0, t_last = 0;
  while (bulk < want) {
    if (::poll(pfds.data(), pfds.size(), idle_ms) <= 0) break;
    for (std::size_t i = 0; i < pfds.size(); ++i) {
      if (!(pfds[i].revents & POLLIN)) continue;
      for (const Message& m : ks[i].read_msgs(256)) {
        const std::uint64_t s = seq_of(m.data.data(), m.data.size());
        if (s >= count.size()) continue;
        if (static_cast<long>(s) < lat_msgs) {
          if (++count[s] == nks) {
            FanAck a{s, now_ns()};
            write_full(ack_fd, &a, sizeof a);
          }
        } else {
          ++bulk;
          t_last = now_ns();
        }
      }
    }
  }
  FanAck done{~std::uint64_t{0} - bulk, t_last};  // seq field carries the count
  write_full(ack_fd, &done, sizeof done);
}

std::vector<Row> fanout(int listeners, int procs, long lat_msgs, long messages) {
  Pipe ready, acks;
  std::vector<pid_t> kids;
  for (int p = 0; p < procs; ++p) {
    const int nks = listeners / procs + (p < listeners % procs ? 1 : 0);
    kids.push_back(spawn([&, nks] {
      ::close(ready.r);
      ::close(acks.r);
      fan_listener(nks, lat_msgs, messages, ready.w, acks.w, 5000);
    }));
  }
  ::close(ready.w);
  ::close(acks.w);
  for (int p = 0; p < procs; ++p) {
    char c;
    read_full(ready.r, &c, 1);
  }
  Sender s{open_ksock()};
  Message m = kbus::make_announcement("$.Bench.Fan", std::string(64, 'x'), kbus::flag::kAllOrWait);
  std::vector<double> lat, send_ns;
  for (long i = 0; i < lat_msgs; ++i) {
    set_seq(m.data.data(), static_cast<std::uint64_t>(i));
    const std::uint64_t t0 = now_ns();
    s.send_all({m});
    send_ns.push_back(static_cast<double>(now_ns() - t0));
    std::uint64_t last = 0;
    for (int p = 0; p < procs; ++p) {
      FanAck a{};
      if (!read_full(acks.r, &a, sizeof a)) break;
      last = std::max(last, a.t);
    }
    lat.push_back(static_cast<double>(last - t0));
  }
  const std::uint64_t t0 = now_ns();
  std::vector<double> bulk_send_ns;
  for (long i = 0; i < messages; ++i) {
    set_seq(m.data.data(), static_cast<std::uint64_t>(lat_msgs + i));
    const std::uint64_t a = now_ns();
    s.send_all({m});
    bulk_send_ns.push_back(static_cast<double>(now_ns() - a));
  }
  std::uint64_t received = 0, t_last = t0;
  for (int p = 0; p < procs; ++p) {
    FanAck a{};
    if (!read_full(acks.r, &a, sizeof a)) continue;
    received += ~std::uint64_t{0} - a.seq;
    t_last = std::max(t_last, a.t);
  }
  for (pid_t k : kids) wait_child(k);
  s.k.close();
  std::vector<Row> rows(2);
  rows[0].system = "kbus C++";
  rows[0].test = "fan-out latency to " + std::to_string(listeners);
  rows[0].payload = 64;
  rows[0].listeners = listeners;
  rows[0].lat = summarise(lat);
  {
    Summary sn = summarise(send_ns);
    char buf[160];
    std::snprintf(buf, sizeof buf, "time until the last listener has it; send_msg() itself p50 %.1f us",
                  sn.p50_us);
    rows[0].note = buf;
  }
  rows[1].system = "kbus C++";
  rows[1].test = "fan-out to " + std::to_string(listeners) + ", one per call";
  rows[1].payload = 64;
  rows[1].listeners = listeners;
  rows[1].lat = summarise(bulk_send_ns);  // per send_msg() call
  rows[1].sent = messages;
  const std::uint64_t expected = static_cast<std::uint64_t>(messages) * static_cast<std::uint64_t>(listeners);
  rows[1].lost = static_cast<long>(expected - std::min(expected, received));
  const double secs = static_cast<double>(t_last - t0) / 1e9;
  rows[1].rate = secs > 0 ? static_cast<double>(received) / listeners / secs : 0;
  {
    char buf[160];
    std::snprintf(buf, sizeof buf, "p50/p99 = send_msg() call; %.0f deliveries/s in all; sender waited %ldx",
                  secs > 0 ? static_cast<double>(received) / secs : 0.0, s.waits);
    rows[1].note = buf;
  }
  return rows;
}

// ---------------------------------------------------------------- memory

long rss_kib(long pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return -1;
}

long nofile_soft_limit(long pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/limits");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("Max open files", 0) == 0) return std::strtol(line.c_str() + 14, nullptr, 10);
  return -1;
}

long fd_count(long pid) {
  long n = 0;
  if (DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
  }
  return n;
}

// Everything stays open until the end, so that the daemon's heap only grows
// and each VmRSS difference is the cost of what was added. Run it on a
// fresh kbusd (bench/run.py does).
std::vector<Row> memory(long pid, long want_ksocks, long messages) {
  std::vector<Row> rows;
  std::vector<Ksock> keep;
  usleep(100000);
  // Queued messages: `messages` 64-byte announcements queued, unread, for
  // one listener; then for 4 listeners (the body is shared, DESIGN.md §5).
  for (int listeners : {1, 4}) {
    std::vector<Ksock> ls;
    for (int i = 0; i < listeners; ++i) {
      ls.push_back(open_ksock());
      ls.back().set_max_messages(static_cast<std::uint32_t>(messages + 16));
      ls.back().bind(listeners == 1 ? "$.Bench.Queued1" : "$.Bench.Queued4");
    }
    Sender s{open_ksock()};
    Message m = kbus::make_announcement(listeners == 1 ? "$.Bench.Queued1" : "$.Bench.Queued4",
                                        std::string(64, 'x'), kbus::flag::kAllOrFail);
    std::vector<Message> batch(256, m);
    usleep(100000);
    const long b = rss_kib(pid);
    for (long sent = 0; sent < messages; sent += 256) {
      if (messages - sent < 256) batch.resize(static_cast<std::size_t>(messages - sent));
      auto res = s.k.try_send_msgs(batch);
      if (res.error != kbus::Errc::ok) {
        std::fprintf(stderr, "bench kbus: queueing failed: errno %d\n", static_cast<int>(res.error));
        break;
      }
    }
    usleep(100000);
    const long a = rss_kib(pid);
    const long queued = static_cast<long>(ls[0].num_messages());
    Row r;
    r.system = "kbusd";
    r.test = listeners == 1 ? "memory per queued message" : "memory per queued message, 4 listeners";
    r.payload = 64;
    r.listeners = listeners;
    r.sent = queued;
    r.value = queued > 0 ? static_cast<double>(a - b) * 1024.0 / static_cast<double>(queued) : -1;
    r.unit = "bytes";
    char buf[200];
    std::snprintf(buf, sizeof buf, "VmRSS %ld -> %ld KiB with %ld messages queued for %d listener(s)%s", b, a,
                  queued, listeners, listeners > 1 ? " (value: per message, its 4 copies together)" : "");
    r.note = buf;
    rows.push_back(r);
    for (auto& k : ls) keep.push_back(std::move(k));
    keep.push_back(std::move(s.k));
  }
  // Idle Ksocks. Each costs the client 1 fd (its connection: the poll fd is
  // only fetched when asked for, docs/protocol.md §3.1); what it
  // costs the daemon is measured on 100 Ksocks first, then as many are
  // opened as both sides' RLIMIT_NOFILE allow, up to want_ksocks.
  const long own = raise_nofile(2 * want_ksocks + 256);
  const long daemon_limit = nofile_soft_limit(pid);
  long daemon_fds_per = 2;
  {
    const long f0 = fd_count(pid);
    std::vector<Ksock> probe;
    for (int i = 0; i < 100; ++i) probe.push_back(open_ksock());
    daemon_fds_per = std::max(1L, (fd_count(pid) - f0 + 50) / 100);
  }
  usleep(100000);
  long n = want_ksocks;
  std::string limited;
  const long room = (daemon_limit - fd_count(pid) - 32) / daemon_fds_per;
  if (daemon_limit > 0 && room < n) {
    n = room;
    limited = "kbusd's RLIMIT_NOFILE (" + std::to_string(daemon_limit) + ") allows only " +
              std::to_string(n) + " more Ksocks (" + std::to_string(daemon_fds_per) +
              " daemon fds each); ";
  }
  const long per_child = std::max(1L, (own - 64) / 2);
  const long before = rss_kib(pid);
  Pipe ready, go;
  std::vector<pid_t> kids;
  for (long opened = 0; opened < n; opened += per_child) {
    const long count = std::min(per_child, n - opened);
    kids.push_back(spawn([&, count] {
      ::close(go.w);
      std::vector<Ksock> ks;
      ks.reserve(static_cast<std::size_t>(count));
      for (long i = 0; i < count; ++i) {
        auto r = Ksock::try_open(0, kbus::Mode::read_write, g_dir);
        if (!r) {
          std::fprintf(stderr, "bench kbus: open Ksock %ld failed: errno %d\n", i, static_cast<int>(r.error()));
          break;
        }
        ks.push_back(std::move(*r));
      }
      const long got = static_cast<long>(ks.size());
      write_full(ready.w, &got, sizeof got);
      char c;
      (void)::read(go.r, &c, 1);  // EOF: the parent is done measuring
      ::_exit(0);                 // the daemon sees the connections close
    }));
  }
  ::close(go.r);
  long opened = 0;
  for (std::size_t i = 0; i < kids.size(); ++i) {
    long got = 0;
    read_full(ready.r, &got, sizeof got);
    opened += got;
  }
  usleep(200000);
  const long after = rss_kib(pid);
  ::close(go.w);
  for (pid_t k : kids) wait_child(k);
  Row r;
  r.system = "kbusd";
  r.test = "memory per idle Ksock";
  r.value = opened > 0 ? static_cast<double>(after - before) * 1024.0 / static_cast<double>(opened) : -1;
  r.unit = "bytes";
  r.sent = opened;
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "%sVmRSS %ld -> %ld KiB with %ld idle Ksocks; 10 000 Ksocks = %.1f MiB; %ld daemon fds per Ksock",
                limited.c_str(), before, after, opened, r.value * 10000.0 / 1048576.0, daemon_fds_per);
  r.note = buf;
  rows.push_back(r);
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  Args args(argc, argv);
  g_dir = args.str("dir");
  const long payload = std::max(8L, args.num("payload", 64));
  const std::string cmd = args.cmd();
  if (g_dir.empty()) {
    std::fprintf(stderr, "kbus_bench_kbus: --dir is required\n");
    return 2;
  }
  if (cmd == "rtt") {
    emit(rtt(payload, args.num("iterations", 20000), args.str("calls", "request") == "request"));
  } else if (cmd == "tput") {
    const int batch = static_cast<int>(std::max(1L, args.num("batch", 1)));
    const int recv_batch = static_cast<int>(std::max(1L, args.num("recv-batch", batch > 1 ? 1024 : 1)));
    emit(tput(static_cast<int>(args.num("listeners", 1)), payload, args.num("messages", 100000), batch,
              recv_batch, static_cast<std::uint32_t>(args.num("queue", 100000)), "kbus C++"));
  } else if (cmd == "bindings") {
    std::vector<long> counts;
    const std::string list = args.str("bindings", "10,10000,100000");
    for (std::size_t at = 0; at < list.size();) {
      std::size_t comma = list.find(',', at);
      if (comma == std::string::npos) comma = list.size();
      counts.push_back(std::strtol(list.substr(at, comma - at).c_str(), nullptr, 10));
      at = comma + 1;
    }
    for (const Row& r : bindings(counts, args.num("sends", 20000), static_cast<int>(args.num("rounds", 10))))
      emit(r);
  } else if (cmd == "fanout") {
    for (const Row& r : fanout(static_cast<int>(args.num("listeners", 1000)),
                               static_cast<int>(args.num("procs", 4)), args.num("latency-msgs", 200),
                               args.num("messages", 2000)))
      emit(r);
  } else if (cmd == "memory") {
    for (const Row& r : memory(args.num("daemon-pid", 0), args.num("ksocks", 10000), args.num("messages", 50000)))
      emit(r);
  } else {
    std::fprintf(stderr, "usage: kbus_bench_kbus rtt|tput|bindings|fanout|memory --dir DIR [options]\n"
                         "(see the comment at the top of bench/kbus_cpp.cpp)\n");
    return 2;
  }
  return 0;
}
