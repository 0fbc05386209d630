// kbus_bench_zmq: ZeroMQ over ipc:// (Unix sockets), brokerless.
//
//   kbus_bench_zmq rtt  --dir DIR [--payload B] [--iterations N]    REQ/REP
//   kbus_bench_zmq tput --dir DIR --listeners L [--payload B] [--messages M]
//                                                                    PUB/SUB
//
// PUB/SUB runs with unbounded queues (ZMQ_SNDHWM = ZMQ_RCVHWM = 0), so
// nothing is dropped for a slow subscriber; losses are counted anyway.
#include <zmq.h>

#include "bench_common.hpp"

namespace {

using namespace bench;

void check(int rc, const char* what) {
  if (rc != 0) {
    std::fprintf(stderr, "bench zmq: %s: %s\n", what, zmq_strerror(zmq_errno()));
    std::exit(3);
  }
}

Row rtt(const std::string& dir, long payload, long iterations) {
  const std::string ep = "ipc://" + dir + "/zmq-rtt";
  Pipe ready;
  pid_t server = spawn([&] {
    void* ctx = zmq_ctx_new();
    void* rep = zmq_socket(ctx, ZMQ_REP);
    check(zmq_bind(rep, ep.c_str()), "bind");
    write_full(ready.w, "r", 1);
    std::vector<char> buf(static_cast<std::size_t>(payload) + 16);
    for (;;) {
      int n = zmq_recv(rep, buf.data(), buf.size(), 0);
      if (n < 0) break;
      if (n == 1 && buf[0] == 'q') {
        zmq_send(rep, "q", 1, 0);
        break;
      }
      if (zmq_send(rep, buf.data(), static_cast<std::size_t>(n), 0) < 0) break;
    }
    zmq_close(rep);
    zmq_ctx_term(ctx);
  });
  char c;
  read_full(ready.r, &c, 1);
  void* ctx = zmq_ctx_new();
  void* req = zmq_socket(ctx, ZMQ_REQ);
  check(zmq_connect(req, ep.c_str()), "connect");
  const auto len = static_cast<std::size_t>(payload);
  std::vector<char> out(len, 'x'), in(len + 16);
  Summary s = time_round_trips(iterations, [&] {
    zmq_send(req, out.data(), len, 0);
    zmq_recv(req, in.data(), in.size(), 0);
  });
  zmq_send(req, "q", 1, 0);
  zmq_recv(req, in.data(), in.size(), 0);
  wait_child(server);
  int linger = 0;
  zmq_setsockopt(req, ZMQ_LINGER, &linger, sizeof linger);
  zmq_close(req);
  zmq_ctx_term(ctx);
  Row r;
  r.system = "ZeroMQ ipc REQ/REP";
  r.test = "round trip";
  r.payload = payload;
  r.lat = s;
  return r;
}

Row tput(const std::string& dir, int listeners, long payload, long messages) {
  const std::string ep = "ipc://" + dir + "/zmq-pub";
  void* ctx = nullptr;
  void* pub = nullptr;
  const auto len = static_cast<std::size_t>(payload);
  std::vector<char> msg(len, 'x');
  TputSpec spec;
  spec.system = "ZeroMQ ipc PUB/SUB";
  spec.test = "fan-out";
  spec.payload = payload;
  spec.listeners = listeners;
  spec.messages = messages;
  spec.warmup = true;  // subscriptions reach the publisher asynchronously
  TputHooks h;
  h.sender_setup = [&] {};
  h.listen = [&](int, int ready_fd, ListenerCounter& counter, int idle_ms) {
    void* c = zmq_ctx_new();
    void* sub = zmq_socket(c, ZMQ_SUB);
    int hwm = 0;
    check(zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, sizeof hwm), "RCVHWM");
    check(zmq_setsockopt(sub, ZMQ_RCVTIMEO, &idle_ms, sizeof idle_ms), "RCVTIMEO");
    check(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0), "SUBSCRIBE");
    check(zmq_connect(sub, ep.c_str()), "connect");
    write_full(ready_fd, "r", 1);
    std::vector<char> buf(len + 16);
    for (;;) {
      int n = zmq_recv(sub, buf.data(), buf.size(), 0);
      if (n < 0 || !counter.on_msg(buf.data(), static_cast<std::size_t>(n))) break;
    }
    int linger = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(sub);
    zmq_ctx_term(c);
  };
  // The publisher is created after the listeners are forked (a ZeroMQ
  // context must not cross fork()); it binds, and the warm-up messages wait
  // for the subscriptions.
  bool bound = false;
  h.send = [&](std::uint64_t seq) {
    if (!bound) {
      ctx = zmq_ctx_new();
      pub = zmq_socket(ctx, ZMQ_PUB);
      int hwm = 0;
      check(zmq_setsockopt(pub, ZMQ_SNDHWM, &hwm, sizeof hwm), "SNDHWM");
      check(zmq_bind(pub, ep.c_str()), "bind");
      bound = true;
    }
    set_seq(msg.data(), seq);
    zmq_send(pub, msg.data(), len, 0);
  };
  h.sender_teardown = [&] {
    int linger = 0;
    zmq_setsockopt(pub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(pub);
    zmq_ctx_term(ctx);
  };
  return run_throughput(spec, h);
}

}  // namespace

int main(int argc, char** argv) {
  Args args(argc, argv);
  const std::string dir = args.str("dir", "/tmp");
  const long payload = std::max(8L, args.num("payload", 64));
  if (args.cmd() == "rtt") {
    emit(rtt(dir, payload, args.num("iterations", 20000)));
    return 0;
  }
  if (args.cmd() == "tput") {
    emit(tput(dir, static_cast<int>(args.num("listeners", 1)), payload,
              args.num("messages", 200000)));
    return 0;
  }
  std::fprintf(stderr, "usage: kbus_bench_zmq rtt|tput --dir DIR [--listeners L] [--payload B] "
                       "[--iterations N] [--messages M]\n");
  return 2;
}
