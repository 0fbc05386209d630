// kbus_bench_mqtt: MQTT through mosquitto (started privately by
// bench/run.py on a Unix socket), with libmosquitto, QoS 0.
//
//   kbus_bench_mqtt rtt  --socket PATH [--payload B] [--iterations N]
//        request/response via two topics: the client publishes on
//        kbus/bench/req, the server (subscribed to it) publishes the same
//        bytes on kbus/bench/rep, where the client is subscribed.
//   kbus_bench_mqtt tput --socket PATH --listeners L [--payload B] [--messages M]
//        pub/sub: L subscribers of kbus/bench/tick. The private mosquitto
//        runs with max_queued_messages 0 (no limit); losses are counted.
//
// --socket may also be HOST:PORT for a TCP listener.
#include <mosquitto.h>

#include "bench_common.hpp"

namespace {

using namespace bench;

std::string g_host;
int g_port = 0;

void parse_target(const std::string& s) {
  auto colon = s.rfind(':');
  if (!s.empty() && s[0] != '/' && colon != std::string::npos) {
    g_host = s.substr(0, colon);
    g_port = std::atoi(s.c_str() + colon + 1);
  } else {
    g_host = s;
    g_port = 0;  // a Unix socket (mosquitto 2.0)
  }
}

struct Client {
  mosquitto* m = nullptr;
  std::function<void(const mosquitto_message*)> on_message;
  bool subscribed = false;

  Client() {
    m = mosquitto_new(nullptr, true, this);
    if (!m) die("mosquitto_new");
    mosquitto_message_callback_set(m, [](mosquitto*, void* self, const mosquitto_message* msg) {
      auto* c = static_cast<Client*>(self);
      if (c->on_message) c->on_message(msg);
    });
    mosquitto_subscribe_callback_set(
        m, [](mosquitto*, void* self, int, int, const int*) { static_cast<Client*>(self)->subscribed = true; });
    int rc = mosquitto_connect(m, g_host.c_str(), g_port, 600);
    if (rc != MOSQ_ERR_SUCCESS) {
      std::fprintf(stderr, "bench mqtt: connect %s: %s\n", g_host.c_str(), mosquitto_strerror(rc));
      std::exit(3);
    }
  }
  ~Client() {
    mosquitto_disconnect(m);
    mosquitto_destroy(m);
  }
  void subscribe(const char* topic) {
    mosquitto_subscribe(m, nullptr, topic, 0);
    while (!subscribed) {
      if (mosquitto_loop(m, 1000, 1) != MOSQ_ERR_SUCCESS) die("mosquitto_loop");
    }
  }
  int loop(int timeout_ms) { return mosquitto_loop(m, timeout_ms, 1); }
  void publish(const char* topic, const void* p, std::size_t n) {
    mosquitto_publish(m, nullptr, topic, static_cast<int>(n), p, 0, false);
    // Non-threaded: publish writes at once if the socket takes it; otherwise
    // keep writing (and reading) until the queue is out.
    while (mosquitto_want_write(m)) loop(100);
  }
};

Row rtt(long payload, long iterations) {
  Pipe ready, stop;
  pid_t server = spawn([&] {
    Client c;
    bool quit = false;
    std::vector<std::string> pending;  // no publishing from inside a callback
    c.on_message = [&](const mosquitto_message* msg) {
      if (msg->payloadlen == 1) quit = true;
      else pending.emplace_back(static_cast<const char*>(msg->payload),
                                static_cast<std::size_t>(msg->payloadlen));
    };
    c.subscribe("kbus/bench/req");
    write_full(ready.w, "r", 1);
    while (!quit && c.loop(1000) == MOSQ_ERR_SUCCESS) {
      for (const std::string& p : pending) c.publish("kbus/bench/rep", p.data(), p.size());
      pending.clear();
    }
  });
  char ch;
  read_full(ready.r, &ch, 1);
  Client c;
  bool got = false;
  c.on_message = [&](const mosquitto_message*) { got = true; };
  c.subscribe("kbus/bench/rep");
  std::vector<char> out(static_cast<std::size_t>(payload), 'x');
  long timeouts = 0;
  Summary s = time_round_trips(iterations, [&] {
    got = false;
    c.publish("kbus/bench/req", out.data(), out.size());
    const std::uint64_t deadline = now_ns() + 5'000'000'000ull;
    while (!got) {
      c.loop(100);
      if (now_ns() > deadline) {
        ++timeouts;
        break;
      }
    }
  });
  c.publish("kbus/bench/req", "q", 1);
  wait_child(server);
  Row r;
  r.system = "mosquitto MQTT QoS0";
  r.test = "round trip";
  r.payload = payload;
  r.lat = s;
  if (timeouts) r.note = "lost replies: " + std::to_string(timeouts);
  return r;
}

Row tput(int listeners, long payload, long messages) {
  const auto len = static_cast<std::size_t>(payload);
  std::vector<char> msg(len, 'x');
  Client* sender = nullptr;
  TputSpec spec;
  spec.system = "mosquitto MQTT QoS0";
  spec.test = "fan-out";
  spec.payload = payload;
  spec.listeners = listeners;
  spec.messages = messages;
  TputHooks h;
  h.listen = [&](int, int ready_fd, ListenerCounter& counter, int idle_ms) {
    Client c;
    bool going = true;
    std::uint64_t last = now_ns();
    c.on_message = [&](const mosquitto_message* m) {
      last = now_ns();
      if (going && !counter.on_msg(m->payload, static_cast<std::size_t>(m->payloadlen)))
        going = false;
    };
    c.subscribe("kbus/bench/tick");  // SUBACK: the broker routes to us from now on
    write_full(ready_fd, "r", 1);
    while (going && c.loop(idle_ms) == MOSQ_ERR_SUCCESS) {
      if (now_ns() - last > static_cast<std::uint64_t>(idle_ms) * 1000000u) break;
    }
  };
  h.send = [&](std::uint64_t seq) {
    if (!sender) sender = new Client;
    set_seq(msg.data(), seq);
    sender->publish("kbus/bench/tick", msg.data(), len);
  };
  h.sender_teardown = [&] { delete sender; };
  return run_throughput(spec, h);
}

}  // namespace

int main(int argc, char** argv) {
  Args args(argc, argv);
  parse_target(args.str("socket", "/tmp/mosquitto.sock"));
  const long payload = std::max(8L, args.num("payload", 64));
  mosquitto_lib_init();
  int rc = 2;
  if (args.cmd() == "rtt") {
    emit(rtt(payload, args.num("iterations", 20000)));
    rc = 0;
  } else if (args.cmd() == "tput") {
    emit(tput(static_cast<int>(args.num("listeners", 1)), payload, args.num("messages", 100000)));
    rc = 0;
  } else {
    std::fprintf(stderr, "usage: kbus_bench_mqtt rtt|tput --socket PATH|HOST:PORT "
                         "[--listeners L] [--payload B] [--iterations N] [--messages M]\n");
  }
  mosquitto_lib_cleanup();
  return rc;
}
