// kbus_bench_nats: what joining two buses through NATS costs (docs/fleet.md).
// In one run, on loopback:
//   * bridge   - two kbusd, a kbus-bridge on each, one nats-server (JetStream)
//   * limpet   - the same two kbusd joined by a kbus-limpet TCP pair
//   * nats     - plain NATS: a libnats requester and replier, publisher and
//                subscriber, on the same nats-server (no KBUS at all)
// Measured for each: request/reply round trips (sequential, one outstanding:
// p50/p99 and requests/s) and announcement throughput from one sender to one
// listener on the other host (messages/s over first send -> last arrival,
// with the share delivered: neither NATS nor the bridge applies back
// pressure across hosts, so a listener that falls behind loses messages).
//
//   kbus_bench_nats [--iterations N] [--announcements N] [--payload BYTES]
//
// Prints a table and one RESULT line per measurement (bench_common.hpp).
#include <arpa/inet.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include "bench_common.hpp"
#include "kbus/ksock.hpp"

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& what) { bench::fatal(what); }

std::string make_dir() { return bench::make_temp_dir("kbus-nats-bench"); }
using bench::start_kbusd;
using bench::start_limpet;
using bench::stop_program;

int free_port() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("bind");
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  close(s);
  return ntohs(a.sin_port);
}

// An echoing replier on `dir` in a thread; stopped by `quit`.
std::thread echo_thread(const std::string& dir, std::atomic<bool>& quit, std::atomic<bool>& up) {
  return std::thread([dir, &quit, &up] {
    auto k = kbus::Ksock::open(0, kbus::Mode::read_write, dir);
    k.bind("$.Bench.Echo", true);
    up = true;
    while (!quit) {
      auto m = k.wait_for_msg(std::chrono::milliseconds(100));
      if (!m || !m->wants_us_to_reply()) continue;
      auto rep = kbus::make_reply(*m, m->data);
      if (rep.ok()) (void)k.try_send_msg(*rep);
    }
  });
}

bench::Summary kbus_round_trips(const std::string& dir, int iterations, std::size_t payload) {
  auto k = kbus::Ksock::open(0, kbus::Mode::read_write, dir);
  for (int i = 0; i < 10000; ++i) {
    auto r = k.try_find_replier("$.Bench.Echo");
    if (r.ok() && r->has_value()) break;
    poll(nullptr, 0, 2);
  }
  const kbus::Message req = kbus::make_request("$.Bench.Echo", std::string(payload, 'x'));
  std::vector<double> ns;
  const int warm = iterations / 10;
  std::uint64_t start = 0;
  for (int i = 0; i < iterations + warm; ++i) {
    if (i == warm) start = bench::now_ns();
    const std::uint64_t t0 = bench::now_ns();
    const kbus::MessageId id = k.send_msg(req);
    for (;;) {
      auto m = k.wait_for_msg(std::chrono::seconds(10));
      if (!m) die("no reply within 10 s");
      if (m->hdr.in_reply_to == id) {
        if (m->name != "$.Bench.Echo") die("answered with " + m->name);
        break;
      }
    }
    if (i >= warm) ns.push_back(static_cast<double>(bench::now_ns() - t0));
  }
  return bench::summarise(std::move(ns), static_cast<double>(bench::now_ns() - start));
}

struct Flow {
  double rate = 0;      // delivered messages per second
  double share = 0;     // delivered / sent
};

// Announcements from a sender on `send_dir` to a listener on `listen_dir`.
Flow kbus_flow(const std::string& send_dir, const std::string& listen_dir, int count,
               std::size_t payload) {
  auto l = kbus::Ksock::open(0, kbus::Mode::read_write, listen_dir);
  l.set_max_messages(10000);
  l.bind("$.Bench.*");
  auto s = kbus::Ksock::open(0, kbus::Mode::read_write, send_dir);
  // Until one arrives, interest has not reached the sender's side.
  bool warm = false;
  for (int i = 0; i < 2000 && !warm; ++i) {
    s.send_msg(kbus::make_announcement("$.Bench.Warm", "w"));
    warm = l.wait_for_msg(std::chrono::milliseconds(10)).has_value();
  }
  if (!warm) die("announcements do not cross");
  while (l.wait_for_msg(std::chrono::milliseconds(200))) {
  }
  const kbus::Message m =
      kbus::make_announcement("$.Bench.Flow", std::string(payload, 'y'), kbus::flag::kAllOrWait);
  std::atomic<int> got{0};
  std::atomic<std::uint64_t> last{0};
  std::thread listener([&] {
    for (;;) {
      auto msg = l.wait_for_msg(std::chrono::seconds(2));
      if (!msg) return;
      if (msg->name != "$.Bench.Flow") continue;
      last = bench::now_ns();
      if (++got == count) return;
    }
  });
  const std::uint64_t t0 = bench::now_ns();
  for (int i = 0; i < count; ++i) {
    auto r = s.try_send_msg(m);
    if (!r && r.error() == kbus::Errc::eagain) {
      s.wait(kbus::ready::kWritable, std::chrono::seconds(20));
    } else if (!r) {
      die("send failed: " + kbus::errno_name(kbus::to_errno(r.error())));
    }
  }
  listener.join();
  Flow f;
  f.share = static_cast<double>(got) / count;
  f.rate = got > 0 ? got / (static_cast<double>(last - t0) / 1e9) : 0;
  return f;
}

// ---- plain NATS ----

void nats_echo(natsConnection* nc, natsSubscription*, natsMsg* msg, void*) {
  if (natsMsg_GetReply(msg)) {
    natsConnection_Publish(nc, natsMsg_GetReply(msg), natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
  }
  natsMsg_Destroy(msg);
}

struct NatsCount {
  std::atomic<int> got{0};
  std::atomic<std::uint64_t> last{0};
};

void nats_count(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  auto* c = static_cast<NatsCount*>(closure);
  c->last = bench::now_ns();
  ++c->got;
  natsMsg_Destroy(msg);
}

void nats_bench(const std::string& url, int iterations, int count, std::size_t payload,
                bench::Summary& rtt, Flow& flow) {
  natsConnection *server = nullptr, *client = nullptr;
  natsOptions* opts = nullptr;
  natsOptions_Create(&opts);
  natsOptions_SetURL(opts, url.c_str());
  natsOptions_SetSendAsap(opts, true);  // as the bridge: no wait for the flusher
  if (natsConnection_Connect(&server, opts) != NATS_OK ||
      natsConnection_Connect(&client, opts) != NATS_OK) {
    die("cannot connect to " + url);
  }
  natsOptions_Destroy(opts);
  natsSubscription* echo = nullptr;
  natsConnection_Subscribe(&echo, server, "bench.echo", nats_echo, nullptr);
  natsConnection_Flush(server);
  const std::string data(payload, 'x');
  std::vector<double> ns;
  const int warm = iterations / 10;
  std::uint64_t start = 0;
  for (int i = 0; i < iterations + warm; ++i) {
    if (i == warm) start = bench::now_ns();
    const std::uint64_t t0 = bench::now_ns();
    natsMsg* reply = nullptr;
    if (natsConnection_Request(&reply, client, "bench.echo", data.data(), static_cast<int>(data.size()),
                               10000) != NATS_OK) {
      die("plain NATS request failed");
    }
    natsMsg_Destroy(reply);
    if (i >= warm) ns.push_back(static_cast<double>(bench::now_ns() - t0));
  }
  rtt = bench::summarise(std::move(ns), static_cast<double>(bench::now_ns() - start));

  NatsCount c;
  natsSubscription* sub = nullptr;
  natsConnection_Subscribe(&sub, server, "bench.flow", nats_count, &c);
  natsConnection_Flush(server);
  const std::string y(payload, 'y');
  const std::uint64_t t0 = bench::now_ns();
  for (int i = 0; i < count; ++i) {
    natsConnection_Publish(client, "bench.flow", y.data(), static_cast<int>(y.size()));
  }
  natsConnection_Flush(client);
  for (int i = 0; i < 2000 && c.got < count; ++i) poll(nullptr, 0, 1);
  flow.share = static_cast<double>(c.got) / count;
  flow.rate = c.got > 0 ? c.got / (static_cast<double>(c.last - t0) / 1e9) : 0;
  natsSubscription_Destroy(sub);
  natsSubscription_Destroy(echo);
  natsConnection_Destroy(client);
  natsConnection_Destroy(server);
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 2000, announcements = 5000;
  std::size_t payload = 64;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--iterations" && i + 1 < argc) iterations = std::atoi(argv[++i]);
    else if (a == "--announcements" && i + 1 < argc) announcements = std::atoi(argv[++i]);
    else if (a == "--payload" && i + 1 < argc) payload = std::strtoul(argv[++i], nullptr, 10);
    else {
      std::fprintf(stderr,
                   "usage: kbus_bench_nats [--iterations N] [--announcements N] [--payload BYTES]\n");
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  const std::string work = make_dir();
  const int port = free_port();
  const std::string url = "nats://127.0.0.1:" + std::to_string(port);
  {
    std::ofstream conf(work + "/nats.conf");
    conf << "listen: 127.0.0.1:" << port << "\njetstream { store_dir: \"" << work << "/js\" }\n";
  }
  const pid_t nats = bench::start_program({NATS_SERVER_PATH, "-c", work + "/nats.conf"}, "Server is ready");
  const std::string da = make_dir(), db = make_dir();
  const pid_t ka = start_kbusd(da), kb = start_kbusd(db);

  struct Row {
    std::string name;
    bench::Summary rtt;
    Flow flow;
  };
  std::vector<Row> rows;

  // Through NATS, with a bridge on each bus.
  {
    pid_t ba = bench::start_program({KBUS_BRIDGE_PATH, "-d", da, "--id", "1", "--claims-poll-ms", "100", url}, "ready:");
    pid_t bb = bench::start_program({KBUS_BRIDGE_PATH, "-d", db, "--id", "2", "--claims-poll-ms", "100", url}, "ready:");
    std::atomic<bool> quit{false}, up{false};
    std::thread echo = echo_thread(db, quit, up);
    Row r{"bridge (NATS)", kbus_round_trips(da, iterations, payload), {}};
    quit = true;
    echo.join();
    r.flow = kbus_flow(da, db, announcements, payload);
    rows.push_back(r);
    stop_program(ba);
    stop_program(bb);
  }
  // A limpet TCP pair.
  {
    int lport = 0;
    pid_t server = start_limpet({"-s", "-id", "2", "-d", da, "127.0.0.1:0"}, &lport);
    pid_t client = start_limpet({"-c", "-id", "1", "-d", db, "127.0.0.1:" + std::to_string(lport)});
    std::atomic<bool> quit{false}, up{false};
    std::thread echo = echo_thread(db, quit, up);
    Row r{"limpet TCP pair", kbus_round_trips(da, iterations, payload), {}};
    quit = true;
    echo.join();
    r.flow = kbus_flow(da, db, announcements, payload);
    rows.push_back(r);
    stop_program(client);
    stop_program(server);
  }
  // Plain NATS.
  {
    Row r{"plain NATS", {}, {}};
    nats_bench(url, iterations, announcements, payload, r.rtt, r.flow);
    rows.push_back(r);
  }
  stop_program(ka);
  stop_program(kb);
  stop_program(nats);
  std::string cmd = "rm -rf '" + work + "' '" + da + "' '" + db + "'";
  if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "cannot remove the temporary directories\n");

  std::printf("two hosts on loopback, payload %zu bytes, %d round trips, %d announcements\n", payload,
              iterations, announcements);
  std::printf("%-18s %10s %10s %12s %14s %10s\n", "path", "rtt p50us", "rtt p99us", "requests/s",
              "announce/s", "delivered");
  for (const auto& r : rows) {
    std::printf("%-18s %10.1f %10.1f %12.0f %14.0f %9.1f%%\n", r.name.c_str(), r.rtt.p50_us, r.rtt.p99_us,
                r.rtt.rate, r.flow.rate, 100.0 * r.flow.share);
  }
  for (const auto& r : rows) {
    std::printf("RESULT {\"system\": \"%s\", \"test\": \"cross-host\", \"payload\": %zu, \"p50_us\": %.1f, "
                "\"p99_us\": %.1f, \"requests_per_s\": %.0f, \"announcements_per_s\": %.0f, "
                "\"delivered\": %.3f}\n",
                r.name.c_str(), payload, r.rtt.p50_us, r.rtt.p99_us, r.rtt.rate, r.flow.rate, r.flow.share);
  }
  return 0;
}
