// kbus_bench_dbus: a D-Bus message bus (dbus-daemon or dbus-broker, started
// privately by bench/run.py), through libdbus-1, the reference client
// library.
//
//   kbus_bench_dbus rtt  --address ADDR --system NAME [--payload B] [--iterations N]
//        method call: the client calls Echo(ay) on a server that owns a
//        well-known name and returns the same bytes.
//   kbus_bench_dbus tput --address ADDR --system NAME --listeners L
//                        [--payload B] [--messages M]
//        signal: the sender emits Tick(ay) signals; each listener has a match
//        rule for them. D-Bus has no flow control for signals: a bus may
//        drop them, or disconnect a listener, when its queue is over quota;
//        such losses are counted.
#include <dbus/dbus.h>

#include "bench_common.hpp"

namespace {

using namespace bench;

constexpr const char* kName = "org.kbus.Bench";
constexpr const char* kPath = "/org/kbus/Bench";
constexpr const char* kIface = "org.kbus.Bench";

DBusConnection* connect(const std::string& address) {
  DBusError err;
  dbus_error_init(&err);
  DBusConnection* c = dbus_connection_open_private(address.c_str(), &err);
  if (!c || !dbus_bus_register(c, &err)) {
    std::fprintf(stderr, "bench dbus: connect %s: %s\n", address.c_str(),
                 err.message ? err.message : "?");
    std::exit(3);
  }
  dbus_connection_set_exit_on_disconnect(c, FALSE);
  return c;
}

void disconnect(DBusConnection* c) {
  dbus_connection_flush(c);
  dbus_connection_close(c);
  dbus_connection_unref(c);
}

// The byte-array argument of a message (nullptr if none).
const char* bytes_of(DBusMessage* m, int* len) {
  DBusMessageIter it, sub;
  *len = 0;
  if (!dbus_message_iter_init(m, &it) || dbus_message_iter_get_arg_type(&it) != DBUS_TYPE_ARRAY)
    return nullptr;
  dbus_message_iter_recurse(&it, &sub);
  const char* p = nullptr;
  dbus_message_iter_get_fixed_array(&sub, &p, len);
  return p;
}

void append_bytes(DBusMessage* m, const char* p, int len) {
  dbus_message_append_args(m, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE, &p, len, DBUS_TYPE_INVALID);
}

Row rtt(const std::string& address, const std::string& system, long payload, long iterations) {
  Pipe ready;
  pid_t server = spawn([&] {
    DBusConnection* c = connect(address);
    DBusError err;
    dbus_error_init(&err);
    if (dbus_bus_request_name(c, kName, DBUS_NAME_FLAG_DO_NOT_QUEUE, &err) !=
        DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER) {
      std::fprintf(stderr, "bench dbus: cannot own %s\n", kName);
      std::exit(3);
    }
    write_full(ready.w, "r", 1);
    bool quit = false;
    while (!quit && dbus_connection_read_write(c, -1)) {
      while (DBusMessage* m = dbus_connection_pop_message(c)) {
        if (dbus_message_is_method_call(m, kIface, "Echo")) {
          int len = 0;
          const char* p = bytes_of(m, &len);
          DBusMessage* reply = dbus_message_new_method_return(m);
          append_bytes(reply, p, len);
          dbus_connection_send(c, reply, nullptr);
          dbus_message_unref(reply);
        } else if (dbus_message_is_method_call(m, kIface, "Quit")) {
          DBusMessage* reply = dbus_message_new_method_return(m);
          dbus_connection_send(c, reply, nullptr);
          dbus_message_unref(reply);
          quit = true;
        }
        dbus_message_unref(m);
      }
      dbus_connection_flush(c);
    }
    disconnect(c);
  });
  char ch;
  read_full(ready.r, &ch, 1);
  DBusConnection* c = connect(address);
  std::vector<char> out(static_cast<std::size_t>(payload), 'x');
  DBusMessage* call = dbus_message_new_method_call(kName, kPath, kIface, "Echo");
  append_bytes(call, out.data(), static_cast<int>(payload));
  long bad = 0;
  Summary s = time_round_trips(iterations, [&] {
    DBusError err;
    dbus_error_init(&err);
    DBusMessage* reply = dbus_connection_send_with_reply_and_block(c, call, -1, &err);
    if (!reply) {
      ++bad;
      dbus_error_free(&err);
      return;
    }
    dbus_message_unref(reply);
  });
  dbus_message_unref(call);
  DBusMessage* quit = dbus_message_new_method_call(kName, kPath, kIface, "Quit");
  DBusError err;
  dbus_error_init(&err);
  if (DBusMessage* r = dbus_connection_send_with_reply_and_block(c, quit, 5000, &err))
    dbus_message_unref(r);
  dbus_message_unref(quit);
  wait_child(server);
  disconnect(c);
  Row r;
  r.system = system;
  r.test = "round trip";
  r.payload = payload;
  r.lat = s;
  if (bad) r.note = "failed calls: " + std::to_string(bad);
  return r;
}

Row tput(const std::string& address, const std::string& system, int listeners, long payload,
         long messages) {
  DBusConnection* c = nullptr;
  const auto len = static_cast<std::size_t>(payload);
  std::vector<char> msg(len, 'x');
  TputSpec spec;
  spec.system = system;
  spec.test = "fan-out";
  spec.payload = payload;
  spec.listeners = listeners;
  spec.messages = messages;
  spec.idle_ms = 3000;
  TputHooks h;
  h.listen = [&](int, int ready_fd, ListenerCounter& counter, int idle_ms) {
    DBusConnection* lc = connect(address);
    DBusError err;
    dbus_error_init(&err);
    dbus_bus_add_match(lc, "type='signal',interface='org.kbus.Bench',member='Tick'", &err);
    if (dbus_error_is_set(&err)) {
      std::fprintf(stderr, "bench dbus: AddMatch: %s\n", err.message);
      std::exit(3);
    }
    write_full(ready_fd, "r", 1);
    bool going = true;
    while (going) {
      if (!dbus_connection_read_write(lc, idle_ms)) break;  // disconnected
      int got = 0;
      while (DBusMessage* m = dbus_connection_pop_message(lc)) {
        ++got;
        if (dbus_message_is_signal(m, kIface, "Tick")) {
          int n = 0;
          const char* p = bytes_of(m, &n);
          if (p && !counter.on_msg(p, static_cast<std::size_t>(n))) going = false;
        } else if (dbus_message_is_signal(m, DBUS_INTERFACE_LOCAL, "Disconnected")) {
          going = false;
        }
        dbus_message_unref(m);
        if (!going) break;
      }
      if (got == 0 && going) {
        // read_write returned on timeout with nothing new: idle.
        pollfd p{};
        int fd = -1;
        dbus_connection_get_unix_fd(lc, &fd);
        p.fd = fd;
        p.events = POLLIN;
        if (::poll(&p, 1, idle_ms) <= 0) break;
      }
    }
    dbus_connection_close(lc);
    dbus_connection_unref(lc);
  };
  long sent_since_flush = 0;
  h.send = [&](std::uint64_t seq) {
    if (!c) c = connect(address);
    set_seq(msg.data(), seq);
    DBusMessage* sig = dbus_message_new_signal(kPath, kIface, "Tick");
    append_bytes(sig, msg.data(), static_cast<int>(len));
    dbus_connection_send(c, sig, nullptr);
    dbus_message_unref(sig);
    // libdbus queues without limit in the client; write out regularly so
    // the client's own queue stays small.
    if (++sent_since_flush == 64) {
      dbus_connection_flush(c);
      sent_since_flush = 0;
    }
  };
  h.flush = [&] {
    if (c) dbus_connection_flush(c);
  };
  h.sender_teardown = [&] {
    if (c) disconnect(c);
  };
  return run_throughput(spec, h);
}

}  // namespace

int main(int argc, char** argv) {
  Args args(argc, argv);
  const std::string address = args.str("address");
  const std::string system = args.str("system", "dbus");
  const long payload = std::max(8L, args.num("payload", 64));
  if (address.empty()) {
    std::fprintf(stderr, "kbus_bench_dbus: --address is required\n");
    return 2;
  }
  if (args.cmd() == "rtt") {
    emit(rtt(address, system, payload, args.num("iterations", 20000)));
    return 0;
  }
  if (args.cmd() == "tput") {
    emit(tput(address, system, static_cast<int>(args.num("listeners", 1)), payload,
              args.num("messages", 100000)));
    return 0;
  }
  std::fprintf(stderr, "usage: kbus_bench_dbus rtt|tput --address ADDR --system NAME "
                       "[--listeners L] [--payload B] [--iterations N] [--messages M]\n");
  return 2;
}
