// bridge/bridge.cpp - see bridge.hpp; docs/fleet.md for the design.
//
// Subjects (PREFIX defaults to "kbus"; P below is PREFIX):
//   P.A.B                 Announcements named $.A.B (subjects.hpp)
//   _KBUS.P.<net>.req     Requests for the repliers claimed by bridge <net>
//   _KBUS.P.<net>.ping    "are you there?" from a bridge waiting on <net>
//   _KBUS.P.<net>.in.*    answers to bridge <net>'s Requests and probes
// Payloads are whole KBUS messages in the limpet wire format (KBUS-SPEC.md
// §10.3), so that every header field crosses and guards catch garbage.
// Headers: Kbus-Origin (<net>/<incarnation>) and Kbus-Seq (announcements).
//
// Key-value bucket P_fleet (TTL = the lease):
//   b.<net>               "<host key> <incarnation>": network id in use
//   r.<escaped name>      "<net> <binder> <host key>": the replier claim of a
//                         name; "" = released
#include "bridge/bridge.hpp"

#include <fcntl.h>
#include <nats/nats.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>

#include "bridge/subjects.hpp"
#include "core/names.hpp"
#include "limpet/ksock_bus.hpp"
#include "limpet/wire.hpp"
#include "util/args.hpp"
#include "util/signals.hpp"

namespace kbus::bridge {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kOriginHeader = "Kbus-Origin";
constexpr const char* kSeqHeader = "Kbus-Seq";
constexpr std::string_view kClaimRefused = "$.KBUS.Bridge.ClaimRefused";

std::string errname(Errc e) { return errno_name(to_errno(e)); }

// Signals: util::SignalPipe (SIGINT/SIGTERM as a readable fd; SIGPIPE
// ignored while the bridge runs).
using StopPipe = util::SignalPipe;

// ---- what libnats' threads hand to the loop ----

struct Event {
  enum class Kind { kMsg, kDisconnected, kReconnected, kClosed, kError };
  Kind kind = Kind::kMsg;
  std::string subject, reply, data, origin, text;
  std::optional<std::uint64_t> seq;
  bool no_responders = false;
};

class EventQueue {
 public:
  EventQueue() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  ~EventQueue() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }
  void push(Event e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      q_.push_back(std::move(e));
    }
    std::uint64_t one = 1;
    (void)!::write(fd_, &one, sizeof one);
  }
  std::deque<Event> take() {
    std::uint64_t n = 0;
    (void)!::read(fd_, &n, sizeof n);
    std::lock_guard<std::mutex> lock(mu_);
    std::deque<Event> out;
    out.swap(q_);
    return out;
  }

 private:
  int fd_;
  std::mutex mu_;
  std::deque<Event> q_;
};

void on_nats_msg(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  auto* q = static_cast<EventQueue*>(closure);
  Event e;
  e.subject = natsMsg_GetSubject(msg);
  if (const char* r = natsMsg_GetReply(msg)) e.reply = r;
  if (natsMsg_GetData(msg) != nullptr) {
    e.data.assign(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
  }
  e.no_responders = natsMsg_IsNoResponders(msg);
  const char* v = nullptr;
  if (natsMsgHeader_Get(msg, kOriginHeader, &v) == NATS_OK && v) e.origin = v;
  v = nullptr;
  if (natsMsgHeader_Get(msg, kSeqHeader, &v) == NATS_OK && v) {
    char* end = nullptr;
    errno = 0;
    unsigned long long n = std::strtoull(v, &end, 10);
    if (errno == 0 && end != v && *end == '\0') e.seq = n;
  }
  natsMsg_Destroy(msg);
  q->push(std::move(e));
}

void on_disconnected(natsConnection*, void* closure) {
  Event e;
  e.kind = Event::Kind::kDisconnected;
  static_cast<EventQueue*>(closure)->push(std::move(e));
}

void on_reconnected(natsConnection* nc, void* closure) {
  Event e;
  e.kind = Event::Kind::kReconnected;
  char url[256] = {0};
  if (natsConnection_GetConnectedUrl(nc, url, sizeof url) == NATS_OK) e.text = url;
  static_cast<EventQueue*>(closure)->push(std::move(e));
}

void on_closed(natsConnection*, void* closure) {
  Event e;
  e.kind = Event::Kind::kClosed;
  static_cast<EventQueue*>(closure)->push(std::move(e));
}

void on_error(natsConnection*, natsSubscription*, natsStatus err, void* closure) {
  Event e;
  e.kind = Event::Kind::kError;
  e.text = natsStatus_GetText(err);
  static_cast<EventQueue*>(closure)->push(std::move(e));
}

int64_t reconnect_delay(natsConnection*, int attempts, void*) {
  // 100 ms doubling to 2 s, with jitter so that a fleet does not reconnect
  // in lock step after a server dies.
  int64_t d = 100;
  for (int i = 1; i < attempts && d < 2000; ++i) d *= 2;
  d = std::min<int64_t>(d, 2000);
  static thread_local std::minstd_rand rng{std::random_device{}()};
  return d + static_cast<int64_t>(rng() % 100);
}

std::string nats_error(natsStatus s) {
  std::string out = natsStatus_GetText(s);
  natsStatus last = NATS_OK;
  const char* text = nats_GetLastError(&last);
  if (text && *text && std::strstr(out.c_str(), text) == nullptr) out += std::string(": ") + text;
  return out;
}

std::string random_hex(int bytes) {
  std::random_device rd;
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < bytes; ++i) {
    unsigned v = rd() & 0xFF;
    out.push_back(kHex[v >> 4]);
    out.push_back(kHex[v & 15]);
  }
  return out;
}

// §2.4 rank of a binding for tie-breaking among proxies: exact > % > *; a
// longer '*' prefix before a shorter one (recency cannot be known across
// buses; docs/fleet.md).
std::pair<int, std::size_t> rank(std::string_view binding) {
  switch (core::name_class(binding)) {
    case core::NameClass::kSpecific: return {3, binding.size()};
    case core::NameClass::kPercent: return {2, binding.size()};
    case core::NameClass::kStar: return {1, binding.size()};
  }
  return {0, 0};
}

// Does every name matching binding `b` match binding `a`?
bool covers(std::string_view a, std::string_view b) {
  if (a == b) return true;
  switch (core::name_class(a)) {
    case core::NameClass::kSpecific: return false;
    case core::NameClass::kPercent:
      return core::name_class(b) == core::NameClass::kSpecific && core::name_matches(a, b);
    case core::NameClass::kStar:
      if (core::name_class(b) == core::NameClass::kSpecific) return core::name_matches(a, b);
      return core::binding_prefix(b).starts_with(core::binding_prefix(a));
  }
  return false;
}

struct ClaimValue {
  std::uint32_t owner = 0;
  std::uint32_t binder = 0;
  std::string host;
};

std::optional<ClaimValue> parse_claim(std::string_view v) {
  std::istringstream in{std::string(v)};
  ClaimValue c;
  unsigned long long owner = 0, binder = 0;
  if (!(in >> owner >> binder >> c.host) || owner == 0 || owner > 0xFFFFFFFFull ||
      binder > 0xFFFFFFFFull) {
    return std::nullopt;
  }
  c.owner = static_cast<std::uint32_t>(owner);
  c.binder = static_cast<std::uint32_t>(binder);
  return c;
}

// ---- the bridge ----

class Bridge {
 public:
  explicit Bridge(const Options& o) : o_(o), bus_(o.bus, o.dir) {
    if (o_.names.empty()) o_.names.push_back("$.*");
    incarnation_ = random_hex(6);
    char host[256] = {0};
    ::gethostname(host, sizeof host - 1);
    host_key_ = std::string(host) + ":" + (o_.dir.empty() ? "-" : o_.dir) + ":" +
                std::to_string(o_.bus);
    for (char& c : host_key_) {
      if (c == ' ' || c == '\n') c = '_';
    }
  }
  ~Bridge() { teardown(); }
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;

  int run();
  // Closes and frees every NATS handle. libnats may still run a callback
  // (the closed callback, on its own thread) into events_ afterwards: call
  // nats_CloseAndWait() between this and the Bridge's destruction.
  void teardown();

 private:
  struct Pending {
    MessageId id;             // the Request's id as read on this bus
    std::uint32_t requester = 0;
    std::uint32_t owner = 0;  // network id of the bridge that serves it
    std::string name;
    Clock::time_point sent;
  };
  struct Claim {
    std::uint64_t rev = 0;
    std::uint32_t binder = 0;
  };

  void info(const std::string& s) const {
    if (o_.verbosity >= 1) line(s, false);
  }
  void trace(const std::string& s) const {
    if (o_.verbosity >= 2) line(s, false);
  }
  void error(const std::string& s) const { line("error: " + s, true); }
  void line(const std::string& s, bool err) const {
    std::string t = "kbus bridge: " + s + "\n";
    std::fwrite(t.data(), 1, t.size(), stdout);
    std::fflush(stdout);
    if (err) {
      std::fwrite(t.data(), 1, t.size(), stderr);
      std::fflush(stderr);
    }
  }

  // set-up
  bool connect(StopPipe& stop);
  bool setup_jetstream();
  int allocate_id();
  bool setup_bus();
  bool subscribe(const std::string& subject, natsSubscription** sub);

  // from the bus
  bool read_bus();
  void from_bus(const Message& m);
  void publish_announcement(const Message& m);
  void forward_request(const Message& m);
  void owner_answer(const Message& m);
  std::optional<std::string> select_proxy(std::string_view name) const;

  // from NATS
  void handle(Event& e);
  void announcement_from_nats(const Event& e);
  void request_from_nats(const Event& e);
  void answer_from_nats(const Event& e, std::uint64_t seq);
  void probe_answer(const Event& e, std::uint64_t seq);
  std::optional<Message> decode(const Event& e, const char* what);
  void garbage(const Event& e, const std::string& why);
  void publish(const std::string& subject, const std::string& reply, const Message& m,
               bool with_seq);
  void answer_remote(const std::string& reply, const Message& request, std::string_view name);

  // requesting side
  void answer_local(const Pending& p, std::string_view name);
  void fail_pending(std::string_view name, const std::string& why,
                    std::optional<std::uint32_t> owner = std::nullopt);
  void tick_requests();

  // claims
  std::string claim_value(std::uint32_t binder) const {
    return std::to_string(net_) + " " + std::to_string(binder) + " " + host_key_;
  }
  void local_bind(const std::string& name, std::uint32_t binder);
  void local_unbind(const std::string& name, std::uint32_t binder);
  void claim(const std::string& name, std::uint32_t binder);
  void release(const std::string& name);
  void refused(const std::string& name, std::uint32_t binder, std::uint32_t owner);
  void refresh();
  void poll_claims();
  void unproxy(const std::string& name);

  // listeners
  void poll_bindings();

  Options o_;
  limpet::KsockBus bus_;
  std::uint32_t self_ = 0;  // the bridge's Ksock id
  EventQueue events_;
  natsOptions* nopts_ = nullptr;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  kvStore* kv_ = nullptr;
  bool connected_ = false;
  std::uint32_t net_ = 0;
  std::uint64_t id_rev_ = 0;
  std::string incarnation_, origin_, host_key_, ctl_;
  std::uint64_t pub_seq_ = 0;
  std::map<std::string, std::uint64_t> last_seq_;  // origin -> last sequence delivered
  std::map<std::string, natsSubscription*> ann_subs_;
  std::vector<natsSubscription*> ctl_subs_;
  std::map<std::string, std::uint32_t> local_repliers_;  // name -> binder on this bus
  std::map<std::string, Claim> claims_;                  // claimed by this bridge
  std::map<std::string, std::uint32_t> refused_;         // local replier, owner elsewhere
  std::map<std::string, std::uint32_t> proxies_;         // proxy replier binding -> owner
  std::map<std::uint64_t, Pending> pending_;             // seq -> proxied Request
  std::map<std::uint64_t, std::uint32_t> probes_;        // seq -> probed owner
  std::set<std::uint32_t> probing_;
  std::map<MessageId, std::string> served_;              // Request sent here -> reply subject
  std::uint64_t next_seq_ = 0;
  std::uint64_t garbage_count_ = 0;
  int setup_failures_ = 0;
  bool rescan_repliers_ = false;
  Clock::time_point next_claims_, next_bindings_, next_refresh_;
};

bool Bridge::subscribe(const std::string& subject, natsSubscription** sub) {
  natsStatus s = natsConnection_Subscribe(sub, nc_, subject.c_str(), on_nats_msg, &events_);
  if (s != NATS_OK) {
    error("cannot subscribe to " + subject + ": " + nats_error(s));
    return false;
  }
  return true;
}

bool Bridge::connect(StopPipe& stop) {
  if (natsOptions_Create(&nopts_) != NATS_OK) {
    error("cannot create the NATS options (out of memory?)");
    return false;
  }
  std::vector<const char*> urls;
  for (const auto& u : o_.urls) urls.push_back(u.c_str());
  std::string name = "kbus-bridge " + host_key_;
  natsStatus s = natsOptions_SetServers(nopts_, urls.data(), static_cast<int>(urls.size()));
  if (s == NATS_OK) s = natsOptions_SetName(nopts_, name.c_str());
  if (s == NATS_OK) s = natsOptions_SetNoEcho(nopts_, true);
  // Each message goes out as it is published, not when the client's flusher
  // next runs: a Request crosses four NATS hops, each would wait for it.
  if (s == NATS_OK) s = natsOptions_SetSendAsap(nopts_, true);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(nopts_, -1);
  if (s == NATS_OK) s = natsOptions_SetCustomReconnectDelay(nopts_, reconnect_delay, nullptr);
  if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(nopts_, true, on_reconnected, &events_);
  // (With a callback, the first connection is retried in the background.)
  // One delivery thread for every subscription: messages reach the loop in
  // the order the server sent them (docs/fleet.md, "Order").
  if (s == NATS_OK) s = natsOptions_UseGlobalMessageDelivery(nopts_, true);
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(nopts_, on_disconnected, &events_);
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(nopts_, on_reconnected, &events_);
  if (s == NATS_OK) s = natsOptions_SetClosedCB(nopts_, on_closed, &events_);
  if (s == NATS_OK) s = natsOptions_SetErrorHandler(nopts_, on_error, &events_);
  if (s != NATS_OK) {
    error("bad NATS options: " + nats_error(s));
    return false;
  }
  if (!o_.creds.empty()) {
    s = natsOptions_SetUserCredentialsFromFiles(nopts_, o_.creds.c_str(), nullptr);
    if (s != NATS_OK) {
      error("--creds " + o_.creds + ": " + nats_error(s));
      return false;
    }
  }
  if (!o_.tls_ca.empty()) {
    s = natsOptions_SetSecure(nopts_, true);
    if (s == NATS_OK) s = natsOptions_LoadCATrustedCertificates(nopts_, o_.tls_ca.c_str());
    if (s != NATS_OK) {
      error("--tls-ca " + o_.tls_ca + ": " + nats_error(s));
      return false;
    }
  }
  if (!o_.tls_cert.empty()) {
    s = natsOptions_SetSecure(nopts_, true);
    if (s == NATS_OK) {
      s = natsOptions_LoadCertificatesChain(nopts_, o_.tls_cert.c_str(), o_.tls_key.c_str());
    }
    if (s != NATS_OK) {
      error("--tls-cert " + o_.tls_cert + " / --tls-key " + o_.tls_key + ": " + nats_error(s));
      return false;
    }
  }
  s = natsConnection_Connect(&nc_, nopts_);
  if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
    error("cannot connect to NATS: " + nats_error(s));
    return false;
  }
  if (s == NATS_NOT_YET_CONNECTED) info("waiting for a NATS server (retrying with backoff)");
  while (natsConnection_Status(nc_) != NATS_CONN_STATUS_CONNECTED) {
    pollfd p{stop.fd(), POLLIN, 0};
    if (::poll(&p, 1, 100) == 1) return false;
    for (auto& e : events_.take()) (void)e;  // connection events before start are moot
  }
  connected_ = true;
  char url[256] = {0};
  natsConnection_GetConnectedUrl(nc_, url, sizeof url);
  info(std::string("connected to ") + url);
  return true;
}

bool Bridge::setup_jetstream() {
  if (kv_) return true;
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = o_.kv_timeout_ms;
  if (!js_) {
    natsStatus s = natsConnection_JetStream(&js_, nc_, &jo);
    if (s != NATS_OK) {
      error("JetStream: " + nats_error(s));
      return false;
    }
  }
  const std::string bucket = bucket_for_prefix(o_.prefix);
  natsStatus s = js_KeyValue(&kv_, js_, bucket.c_str());
  if (s == NATS_NOT_FOUND) {
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = bucket.c_str();
    cfg.History = 1;
    cfg.TTL = static_cast<int64_t>(o_.lease_ms) * 1000000;  // ns: the lease of every claim
    cfg.Replicas = o_.kv_replicas;
    s = js_CreateKeyValue(&kv_, js_, &cfg);
    if (s == NATS_OK) info("created key-value bucket " + bucket);
  }
  if (s != NATS_OK) {
    kv_ = nullptr;
    if (++setup_failures_ > 3 && setup_failures_ % 20 != 0) return false;
    error("key-value bucket " + bucket + ": " + nats_error(s) +
          " (is JetStream enabled on the NATS servers? retrying)");
    return false;
  }
  return true;
}

// The network id: --id, or a free one picked at random; held in the bucket
// under b.<id> with the lease, so that two live bridges never share one.
int Bridge::allocate_id() {
  const std::string value = host_key_ + " " + incarnation_;
  std::minstd_rand rng{std::random_device{}()};
  for (int attempt = 0; attempt < 50; ++attempt) {
    std::uint32_t id = o_.id != 0 ? o_.id : static_cast<std::uint32_t>(1 + rng() % 0x7FFFFFFE);
    const std::string key = "b." + std::to_string(id);
    std::uint64_t rev = 0;
    natsStatus s = kvStore_CreateString(&rev, kv_, key.c_str(), value.c_str());
    if (s != NATS_OK) {
      kvEntry* e = nullptr;
      natsStatus g = kvStore_Get(&e, kv_, key.c_str());
      if (g == NATS_OK) {
        std::string held = kvEntry_ValueString(e) ? kvEntry_ValueString(e) : "";
        std::uint64_t erev = kvEntry_Revision(e);
        kvEntry_Destroy(e);
        const bool ours = held.empty() || held.substr(0, held.find(' ')) == host_key_;
        if (ours) s = kvStore_UpdateString(&rev, kv_, key.c_str(), value.c_str(), erev);
        if (!ours && o_.id != 0) {
          error("network id " + std::to_string(id) + " is held by another bridge (" + held +
                "); give every bridge its own --id, or none to have one picked");
          return kExitMisconfig;
        }
      } else if (g != NATS_NOT_FOUND) {
        error("cannot read " + key + ": " + nats_error(g));
        return kExitFailure;
      }
    }
    if (s == NATS_OK) {
      net_ = id;
      id_rev_ = rev;
      return kExitOk;
    }
  }
  error("cannot find a free network id in the bucket");
  return kExitFailure;
}

bool Bridge::setup_bus() {
  auto r = bus_.reopen();
  if (!r) {
    error("cannot open bus " + std::to_string(o_.bus) + ": " + errname(r.error()) +
          " (is kbusd running, with that bus? -d gives its socket directory)");
    return false;
  }
  self_ = bus_.ksock_id();
  auto fail = [&](const std::string& what, Errc e) {
    error(what + ": " + errname(e));
    return false;
  };
  if (auto x = bus_.set_max_messages(1000); !x) return fail("MAXMSGS", x.error());
  if (auto x = bus_.only_once(true); !x) return fail("MSGONLYONCE", x.error());
  for (const auto& n : o_.names) {
    if (auto x = bus_.bind(n, false); !x) return fail("BIND " + n, x.error());
  }
  if (auto x = bus_.bind(status_name::kReplierBindEvent, false); !x) {
    return fail("BIND $.KBUS.ReplierBindEvent", x.error());
  }
  // KBUS reports every existing replier binding now (§4.6), then each change.
  if (auto x = bus_.report_replier_binds(); !x) {
    error("REPORTREPLIERBINDS: " + errname(x.error()) +
          " (more replier bindings than the queue holds; some are found by the bindings report)");
    rescan_repliers_ = true;
  }
  return true;
}

void Bridge::teardown() {
  for (auto& [subject, sub] : ann_subs_) natsSubscription_Destroy(sub);
  ann_subs_.clear();
  for (auto* sub : ctl_subs_) natsSubscription_Destroy(sub);
  ctl_subs_.clear();
  if (kv_) kvStore_Destroy(kv_);
  kv_ = nullptr;
  if (js_) jsCtx_Destroy(js_);
  js_ = nullptr;
  if (nc_) {
    natsConnection_Close(nc_);
    natsConnection_Destroy(nc_);
  }
  nc_ = nullptr;
  if (nopts_) natsOptions_Destroy(nopts_);
  nopts_ = nullptr;
}

int Bridge::run() {
  StopPipe stop({SIGINT, SIGTERM}, /*ignore_sigpipe=*/true);
  if (!bus_.reopen()) {
    error("cannot open bus " + std::to_string(o_.bus) +
          " (is kbusd running, with that bus? -d gives its socket directory)");
    return kExitFailure;
  }
  if (!connect(stop)) return stop.stopped() ? kExitOk : kExitFailure;
  // JetStream may not be ready yet (a cluster electing its leader): retry.
  int wait_ms = 100;
  while (!setup_jetstream()) {
    pollfd p{stop.fd(), POLLIN, 0};
    if (::poll(&p, 1, wait_ms) == 1) return kExitOk;
    wait_ms = std::min(wait_ms * 2, 2000);
    for (auto& e : events_.take()) (void)e;
  }
  if (int rc = allocate_id(); rc != kExitOk) return rc;
  origin_ = std::to_string(net_) + "/" + incarnation_;
  ctl_ = "_KBUS." + o_.prefix + "." + std::to_string(net_);
  for (const char* leaf : {".req", ".ping", ".in.*"}) {
    natsSubscription* sub = nullptr;
    if (!subscribe(ctl_ + leaf, &sub)) return kExitFailure;
    ctl_subs_.push_back(sub);
  }
  if (!setup_bus()) return kExitFailure;
  natsConnection_FlushTimeout(nc_, o_.kv_timeout_ms);
  poll_claims();
  poll_bindings();
  {
    std::string names;
    for (const auto& n : o_.names) names += (names.empty() ? "" : " ") + n;
    info("ready: bus " + std::to_string(o_.bus) + " (Ksock " + std::to_string(self_) +
         "), network id " + std::to_string(net_) + ", prefix " + o_.prefix + ", names " + names);
  }
  const auto now0 = Clock::now();
  next_refresh_ = now0 + milliseconds(std::max(1, o_.lease_ms / 3));

  int rc = kExitOk;
  while (true) {
    pollfd fds[3] = {{stop.fd(), POLLIN, 0}, {events_.fd(), POLLIN, 0}, {bus_.fileno(), POLLIN, 0}};
    int n = ::poll(fds, 3, 50);
    if (n < 0 && errno != EINTR) {
      error(std::string("poll: ") + std::strerror(errno));
      rc = kExitFailure;
      break;
    }
    if (stop.stopped()) break;
    for (auto& e : events_.take()) handle(e);
    if (!read_bus()) {
      rc = kExitFailure;
      break;
    }
    const auto now = Clock::now();
    tick_requests();
    if (now >= next_bindings_) poll_bindings();
    if (now >= next_refresh_) refresh();
    if (now >= next_claims_) poll_claims();
  }
  // Leaving: every Request still waiting is answered, claims are released
  // at once (rather than at lease expiry), and the Ksock's close makes KBUS
  // answer whatever it still holds (§7.2).
  fail_pending(status_name::kReplierGoneAway, "the bridge is stopping");
  std::vector<std::string> names;
  for (const auto& [name, c] : claims_) names.push_back(name);
  for (const auto& name : names) release(name);
  if (kv_ && net_ != 0) kvStore_UpdateString(nullptr, kv_, ("b." + std::to_string(net_)).c_str(), "", id_rev_);
  if (nc_) natsConnection_FlushTimeout(nc_, 1000);
  bus_.close();
  info(rc == kExitOk ? "stopped" : "stopped after an error");
  return rc;
}

// ---- from the bus ----

bool Bridge::read_bus() {
  for (int i = 0; i < 256; ++i) {
    auto r = bus_.read_next();
    if (!r) {
      error("reading bus " + std::to_string(o_.bus) + ": " + errname(r.error()) +
            " (kbusd has gone?)");
      return false;
    }
    if (!*r) return true;
    from_bus(**r);
  }
  return true;
}

void Bridge::from_bus(const Message& m) {
  if (m.is_replier_bind_event()) {
    auto ev = decode_replier_bind_event(m.data);
    if (!ev) {
      error("malformed bind event " + m.to_string());
      return;
    }
    if (ev->binder == self_) return;  // our own proxy binding
    if (ev->is_bind) {
      local_bind(ev->name, ev->binder);
    } else {
      local_unbind(ev->name, ev->binder);
    }
    return;
  }
  if (m.name == status_name::kUnbindEventsLost) {
    error("KBUS lost replier unbind events for the bridge; re-reading the bindings report");
    rescan_repliers_ = true;
    return;
  }
  const bool owed = m.wants_us_to_reply();
  if (m.hdr.from == self_) {
    if (owed) {
      // A Request we injected (for a replier claimed here) reached one of
      // our proxies: the claim has moved on. Answer it (the answer comes
      // back to us, its requester, and crosses to the real requester).
      Message r;
      r.name = std::string(status_name::kReplierDisappeared);
      r.hdr.in_reply_to = m.hdr.id;
      r.hdr.to = m.hdr.from;
      (void)bus_.send(r);
    }
    return;
  }
  if (m.is_reply()) {
    if (m.hdr.to == self_) owner_answer(m);
    return;  // otherwise a listener copy: answers go only to their requester
  }
  if (owed) {
    forward_request(m);
    return;
  }
  if (m.is_request()) return;  // a listener copy: Requests are routed, not broadcast
  if (m.name.starts_with("$.KBUS.")) return;  // per-bus messages never cross
  publish_announcement(m);
}

void Bridge::publish(const std::string& subject, const std::string& reply, const Message& m,
                     bool with_seq) {
  std::string payload = limpet::serialise(m);
  natsMsg* msg = nullptr;
  natsStatus s = natsMsg_Create(&msg, subject.c_str(), reply.empty() ? nullptr : reply.c_str(),
                                payload.data(), static_cast<int>(payload.size()));
  if (s == NATS_OK) s = natsMsgHeader_Set(msg, kOriginHeader, origin_.c_str());
  if (s == NATS_OK && with_seq) {
    s = natsMsgHeader_Set(msg, kSeqHeader, std::to_string(++pub_seq_).c_str());
  }
  if (s == NATS_OK) s = natsConnection_PublishMsg(nc_, msg);
  if (msg) natsMsg_Destroy(msg);
  if (s != NATS_OK) error("cannot publish " + m.to_string() + " on " + subject + ": " + nats_error(s));
}

void Bridge::publish_announcement(const Message& m) {
  auto subject = name_to_subject(o_.prefix, m.name);
  if (!subject) return;
  Message out = m;
  if (out.hdr.id.network_id == 0) out.hdr.id.network_id = net_;
  if (out.hdr.orig_from.network_id == 0) out.hdr.orig_from = OrigFrom{net_, m.hdr.from};
  trace("bus -> " + *subject + " " + out.to_string());
  publish(*subject, {}, out, true);
}

std::optional<std::string> Bridge::select_proxy(std::string_view name) const {
  std::optional<std::string> best;
  for (const auto& [binding, owner] : proxies_) {
    if (!core::name_matches(binding, name)) continue;
    if (!best || rank(binding) > rank(*best)) best = binding;
  }
  return best;
}

void Bridge::answer_local(const Pending& p, std::string_view name) {
  Message r;
  r.name = std::string(name);
  r.hdr.in_reply_to = p.id;
  r.hdr.to = p.requester;
  auto sent = bus_.send(r);
  if (!sent && sent.error() != Errc::eaddrnotavail && sent.error() != Errc::econnrefused) {
    error("cannot answer " + p.id.to_string() + " with " + r.name + ": " + errname(sent.error()));
  }
}

void Bridge::forward_request(const Message& m) {
  Pending p;
  p.id = m.hdr.id;
  p.requester = m.hdr.from;
  p.name = m.name;
  p.sent = Clock::now();
  auto binding = select_proxy(m.name);
  if (!binding) {  // raced with an unproxy
    answer_local(p, status_name::kReplierDisappeared);
    return;
  }
  p.owner = proxies_.at(*binding);
  if (!connected_) {
    answer_local(p, status_name::kReplierGoneAway);
    return;
  }
  Message out = m;
  if (out.is_stateful_request() && out.hdr.final_to.network_id != 0 &&
      out.hdr.final_to.network_id != p.owner) {
    // The replier it was for is not the one serving the name now.
    answer_local(p, status_name::kReplierNotSameKsock);
    return;
  }
  if (out.hdr.id.network_id == 0) out.hdr.id.network_id = net_;
  if (out.hdr.orig_from.network_id == 0) out.hdr.orig_from = OrigFrom{net_, m.hdr.from};
  const std::uint64_t seq = ++next_seq_;
  const std::string subject = "_KBUS." + o_.prefix + "." + std::to_string(p.owner) + ".req";
  trace("request " + out.to_string() + " -> " + subject);
  pending_[seq] = p;
  publish(subject, ctl_ + ".in.r" + std::to_string(seq), out, false);
}

void Bridge::owner_answer(const Message& m) {
  auto it = served_.find(m.hdr.in_reply_to);
  if (it == served_.end()) {
    trace("no request awaits " + m.to_string() + "; dropped");
    return;
  }
  Message out = m;
  if (out.hdr.orig_from.network_id == 0) out.hdr.orig_from = OrigFrom{net_, m.hdr.from};
  trace("answer " + out.to_string() + " -> " + it->second);
  publish(it->second, {}, out, false);
  served_.erase(it);
}

// ---- from NATS ----

void Bridge::garbage(const Event& e, const std::string& why) {
  ++garbage_count_;
  if (garbage_count_ <= 100 || garbage_count_ % 1000 == 0) {
    error("dropped a message on " + e.subject +
          (e.origin.empty() ? std::string(" (no Kbus-Origin: not from a bridge)")
                            : " from " + e.origin) +
          ": " + why + " (" + std::to_string(garbage_count_) + " so far)");
  }
}

std::optional<Message> Bridge::decode(const Event& e, const char* what) {
  limpet::WireDecoder d;
  d.feed(e.data);
  auto r = d.next();
  if (!r) {
    garbage(e, std::string("not a KBUS message (") + what + "): bad guard or length");
    return std::nullopt;
  }
  if (!*r) {
    garbage(e, std::string("not a KBUS message (") + what + "): " +
                   std::to_string(e.data.size()) + " bytes, truncated");
    return std::nullopt;
  }
  if (d.buffered() != 0) {
    garbage(e, std::string("trailing bytes after the KBUS message (") + what + ")");
    return std::nullopt;
  }
  return std::move(**r);
}

void Bridge::handle(Event& e) {
  switch (e.kind) {
    case Event::Kind::kDisconnected:
      if (connected_) error("disconnected from NATS; reconnecting");
      connected_ = false;
      fail_pending(status_name::kReplierGoneAway, "the NATS connection was lost");
      return;
    case Event::Kind::kReconnected:
      connected_ = true;
      info("reconnected to " + e.text);
      return;
    case Event::Kind::kClosed:
      connected_ = false;
      return;
    case Event::Kind::kError:
      error("NATS: " + e.text);
      return;
    case Event::Kind::kMsg:
      break;
  }
  if (e.subject.starts_with(ctl_ + ".")) {
    std::string_view leaf = std::string_view(e.subject).substr(ctl_.size() + 1);
    if (leaf == "req") {
      request_from_nats(e);
    } else if (leaf == "ping") {
      if (!e.reply.empty()) natsConnection_PublishString(nc_, e.reply.c_str(), "pong");
    } else if (leaf.starts_with("in.r") || leaf.starts_with("in.p")) {
      const auto parsed = util::parse_integer(leaf.substr(4), 1, (1LL << 62));
      if (!parsed) {
        garbage(e, "not an answer to this bridge");
        return;
      }
      const long long seq = *parsed;
      if (leaf[3] == 'r') {
        answer_from_nats(e, static_cast<std::uint64_t>(seq));
      } else {
        probe_answer(e, static_cast<std::uint64_t>(seq));
      }
    } else {
      garbage(e, "not an answer to this bridge");
    }
    return;
  }
  announcement_from_nats(e);
}

void Bridge::announcement_from_nats(const Event& e) {
  if (!e.origin.empty()) {
    if (e.origin == origin_) return;  // our own (no-echo makes this rare)
    if (e.seq) {
      // One message matching two of our subscriptions arrives twice, one
      // right after the other: deliver it once.
      auto& last = last_seq_[e.origin];
      if (*e.seq <= last) return;
      last = *e.seq;
    }
  }
  std::string why;
  auto name = subject_to_name(o_.prefix, e.subject, &why);
  if (!name) {
    garbage(e, why);
    return;
  }
  auto m = decode(e, "announcement");
  if (!m) return;
  if (m->name != *name) {
    garbage(e, "it carries " + m->name + " on the subject of " + *name);
    return;
  }
  if (m->is_request() || m->is_reply() || m->name.starts_with("$.KBUS.")) {
    garbage(e, "only Announcements travel on name subjects, not " + m->to_string());
    return;
  }
  Message out = std::move(*m);
  out.hdr.flags &= ~(flag::kAllOrWait | flag::kWantYouToReply | flag::kSynthetic);
  trace(e.subject + " -> bus " + out.to_string());
  auto r = bus_.send(out);
  if (!r) info("cannot send " + out.to_string() + " from NATS on the bus: " + errname(r.error()));
}

void Bridge::answer_remote(const std::string& reply, const Message& request, std::string_view name) {
  if (reply.empty()) return;
  Message a;
  a.name = std::string(name);
  a.hdr.in_reply_to = request.hdr.id;
  a.hdr.to = request.hdr.from;
  a.hdr.flags = flag::kSynthetic;
  publish(reply, {}, a, false);
}

void Bridge::request_from_nats(const Event& e) {
  auto m = decode(e, "request");
  if (!m) return;
  if (!m->is_request() || m->is_reply() || e.reply.empty()) {
    garbage(e, "not a Request with a reply subject: " + m->to_string());
    return;
  }
  std::string name_problem = core::name_problem(m->name, true);
  if (!name_problem.empty()) {
    garbage(e, "bad name " + m->name + ": " + name_problem);
    return;
  }
  Message out = *m;
  out.hdr.flags &= ~(flag::kAllOrWait | flag::kWantYouToReply | flag::kSynthetic);
  out.hdr.to = 0;
  if (m->is_stateful_request()) {
    // Stateful (KBUS-SPEC.md §10.5-3, as a limpet): final_to names the
    // replier as {its bridge's network id, its Ksock id}.
    auto r = bus_.find_replier(m->name);
    if (!r || !*r) {
      answer_remote(e.reply, *m, status_name::kReplierGoneAway);
      return;
    }
    if (m->hdr.final_to.network_id == net_) {
      if (**r != m->hdr.final_to.local_id) {
        answer_remote(e.reply, *m, status_name::kReplierNotSameKsock);
        return;
      }
      out.hdr.to = m->hdr.final_to.local_id;
      out.hdr.final_to = OrigFrom{};
    } else {
      out.hdr.to = **r;
    }
  }
  auto sent = bus_.send(out);
  if (!sent) {
    std::string_view status;
    std::string remote;
    switch (sent.error()) {
      case Errc::eaddrnotavail: status = status_name::kReplierDisappeared; break;
      case Errc::epipe: status = status_name::kReplierNotSameKsock; break;
      default:
        remote = std::string(status_name::kRemoteErrorPrefix) + std::to_string(to_errno(sent.error()));
        status = remote;
    }
    trace("cannot send " + out.to_string() + ": " + errname(sent.error()));
    answer_remote(e.reply, *m, status);
    return;
  }
  served_[*sent] = e.reply;
}

void Bridge::answer_from_nats(const Event& e, std::uint64_t seq) {
  auto it = pending_.find(seq);
  if (it == pending_.end()) {
    trace("late answer on " + e.subject + " (already answered); dropped");
    return;
  }
  if (e.no_responders) {
    Pending p = it->second;
    pending_.erase(it);
    trace("no bridge " + std::to_string(p.owner) + " for " + p.name);
    answer_local(p, status_name::kReplierGoneAway);
    return;
  }
  auto m = decode(e, "answer");
  if (!m) return;  // keep waiting: a real answer or the timeout ends it
  if (!m->is_reply() || m->is_request()) {
    garbage(e, "an answer must be a Reply, not " + m->to_string());
    return;
  }
  Pending p = it->second;
  pending_.erase(it);
  Message out = std::move(*m);
  out.hdr.to = p.requester;
  out.hdr.in_reply_to = p.id;
  out.hdr.id = MessageId{};
  out.hdr.flags &= ~(flag::kAllOrWait | flag::kWantYouToReply | flag::kSynthetic | flag::kWantAReply);
  auto r = bus_.send(out);
  if (r) return;
  if (r.error() == Errc::eaddrnotavail || r.error() == Errc::econnrefused) {
    trace("requester of " + p.id.to_string() + " has gone");
    return;
  }
  info("cannot send " + out.to_string() + ": " + errname(r.error()) +
       "; answering with a RemoteError instead");
  answer_local(p, std::string(status_name::kRemoteErrorPrefix) + std::to_string(to_errno(r.error())));
}

void Bridge::probe_answer(const Event& e, std::uint64_t seq) {
  auto it = probes_.find(seq);
  if (it == probes_.end()) return;
  const std::uint32_t owner = it->second;
  probes_.erase(it);
  probing_.erase(owner);
  if (e.no_responders) {
    fail_pending(status_name::kReplierGoneAway,
                 "bridge " + std::to_string(owner) + " does not answer on NATS", owner);
  }
}

// ---- the requesting side's bookkeeping ----

void Bridge::fail_pending(std::string_view name, const std::string& why,
                          std::optional<std::uint32_t> owner) {
  std::size_t n = 0;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (owner && it->second.owner != *owner) {
      ++it;
      continue;
    }
    answer_local(it->second, name);
    it = pending_.erase(it);
    ++n;
  }
  if (n > 0) info(why + ": answered " + std::to_string(n) + " request(s) with " + std::string(name));
  if (!owner) {
    probes_.clear();
    probing_.clear();
  }
}

void Bridge::tick_requests() {
  const auto now = Clock::now();
  for (auto it = pending_.begin(); it != pending_.end();) {
    const Pending& p = it->second;
    if (now - p.sent >= milliseconds(o_.request_timeout_ms)) {
      info("no answer to " + p.id.to_string() + " (" + p.name + ") within " +
           std::to_string(o_.request_timeout_ms) + " ms; answering " +
           std::string(status_name::kReplierIgnored));
      answer_local(p, status_name::kReplierIgnored);
      it = pending_.erase(it);
      continue;
    }
    if (connected_ && now - p.sent >= milliseconds(o_.probe_ms) && !probing_.count(p.owner)) {
      // Is the owning bridge still there? No responders = it has gone.
      const std::uint64_t seq = ++next_seq_;
      probes_[seq] = p.owner;
      probing_.insert(p.owner);
      std::string subject = "_KBUS." + o_.prefix + "." + std::to_string(p.owner) + ".ping";
      std::string reply = ctl_ + ".in.p" + std::to_string(seq);
      natsConnection_PublishRequestString(nc_, subject.c_str(), reply.c_str(), "ping");
    }
    ++it;
  }
}

// ---- claims ----

void Bridge::local_bind(const std::string& name, std::uint32_t binder) {
  local_repliers_[name] = binder;
  if (proxies_.count(name)) return;  // cannot happen: the BIND would have failed
  claim(name, binder);
}

void Bridge::local_unbind(const std::string& name, std::uint32_t binder) {
  auto it = local_repliers_.find(name);
  if (it == local_repliers_.end() || it->second != binder) return;
  local_repliers_.erase(it);
  refused_.erase(name);
  if (claims_.count(name)) release(name);
  next_claims_ = Clock::now();  // a remote replier may now be proxied here
}

void Bridge::refused(const std::string& name, std::uint32_t binder, std::uint32_t owner) {
  auto [it, fresh] = refused_.insert({name, owner});
  if (!fresh && it->second == owner) return;
  it->second = owner;
  error("replier " + name + " (Ksock " + std::to_string(binder) + " on bus " +
        std::to_string(o_.bus) + ") is refused fleet-wide: bridge " + std::to_string(owner) +
        " already serves it. Requests from other buses go there; on this bus the local replier "
        "still answers. Announced as " + std::string(kClaimRefused));
  Message m;
  m.name = std::string(kClaimRefused);
  m.data = name;
  m.hdr.to = binder;
  (void)bus_.send(m);
}

void Bridge::claim(const std::string& name, std::uint32_t binder) {
  auto key = name_to_key(name);
  if (!key || !kv_) return;
  const std::string value = claim_value(binder);
  std::uint64_t rev = 0;
  natsStatus s = kvStore_CreateString(&rev, kv_, key->c_str(), value.c_str());
  if (s != NATS_OK) {
    kvEntry* e = nullptr;
    natsStatus g = kvStore_Get(&e, kv_, key->c_str());
    if (g != NATS_OK) {
      // Not found (raced with a release) or no answer: poll_claims retries.
      trace("claim " + name + ": " + nats_error(s) + "; will retry");
      return;
    }
    std::string held = kvEntry_ValueString(e) ? kvEntry_ValueString(e) : "";
    std::uint64_t erev = kvEntry_Revision(e);
    kvEntry_Destroy(e);
    auto c = parse_claim(held);
    if (c && c->host != host_key_) {
      refused(name, binder, c->owner);
      return;
    }
    // Released, or held by an earlier run of a bridge on this very bus.
    s = kvStore_UpdateString(&rev, kv_, key->c_str(), value.c_str(), erev);
    if (s != NATS_OK) {
      trace("claim " + name + ": " + nats_error(s) + "; will retry");
      return;
    }
  }
  claims_[name] = Claim{rev, binder};
  refused_.erase(name);
  info("claimed " + name + " for Ksock " + std::to_string(binder));
}

void Bridge::release(const std::string& name) {
  auto it = claims_.find(name);
  if (it == claims_.end()) return;
  auto key = name_to_key(name);
  // Conditional on our revision: a claim lost to another bridge is not touched.
  natsStatus s = kvStore_UpdateString(nullptr, kv_, key->c_str(), "", it->second.rev);
  if (s != NATS_OK) trace("release " + name + ": " + nats_error(s));
  claims_.erase(it);
  info("released " + name);
}

void Bridge::refresh() {
  next_refresh_ = Clock::now() + milliseconds(std::max(1, o_.lease_ms / 3));
  if (!kv_) return;
  {
    const std::string key = "b." + std::to_string(net_);
    const std::string value = host_key_ + " " + incarnation_;
    std::uint64_t rev = 0;
    natsStatus s = kvStore_UpdateString(&rev, kv_, key.c_str(), value.c_str(), id_rev_);
    if (s == NATS_OK) {
      id_rev_ = rev;
    } else if ((s = kvStore_CreateString(&rev, kv_, key.c_str(), value.c_str())) == NATS_OK) {
      id_rev_ = rev;  // our lease had run out (NATS unreachable), nobody took it
    } else {
      trace("cannot refresh " + key + ": " + nats_error(s));
    }
  }
  for (auto it = claims_.begin(); it != claims_.end();) {
    auto key = name_to_key(it->first);
    std::uint64_t rev = 0;
    const std::string value = claim_value(it->second.binder);
    natsStatus s = kvStore_UpdateString(&rev, kv_, key->c_str(), value.c_str(), it->second.rev);
    if (s == NATS_OK) {
      it->second.rev = rev;
      ++it;
      continue;
    }
    kvEntry* e = nullptr;
    natsStatus g = kvStore_Get(&e, kv_, key->c_str());
    if (g == NATS_NOT_FOUND) {
      // The lease ran out while NATS was unreachable, and nobody took it.
      if (kvStore_CreateString(&rev, kv_, key->c_str(), value.c_str()) == NATS_OK) {
        it->second.rev = rev;
      }
      ++it;
      continue;
    }
    if (g != NATS_OK) {  // unreachable: try again next time
      trace("cannot refresh the claim of " + it->first + ": " + nats_error(s));
      ++it;
      continue;
    }
    std::string held = kvEntry_ValueString(e) ? kvEntry_ValueString(e) : "";
    kvEntry_Destroy(e);
    auto c = parse_claim(held);
    if (c && c->host != host_key_) {
      std::string name = it->first;
      std::uint32_t binder = it->second.binder;
      it = claims_.erase(it);
      error("lost the claim of " + name + " (the lease ran out while NATS was unreachable)");
      refused(name, binder, c->owner);
      continue;
    }
    ++it;
  }
}

void Bridge::unproxy(const std::string& name) {
  auto it = proxies_.find(name);
  if (it == proxies_.end()) return;
  auto r = bus_.unbind(name, true);
  if (!r) error("cannot unbind proxy replier " + name + ": " + errname(r.error()));
  proxies_.erase(it);
  info("proxy replier for " + name + " removed");
}

void Bridge::poll_claims() {
  next_claims_ = Clock::now() + milliseconds(o_.claims_poll_ms);
  if (!kv_ || !connected_) return;
  kvWatchOptions wo;
  kvWatchOptions_Init(&wo);
  wo.IgnoreDeletes = true;
  kvWatcher* w = nullptr;
  natsStatus s = kvStore_WatchAll(&w, kv_, &wo);
  if (s != NATS_OK) {
    trace("cannot read the claims: " + nats_error(s));
    return;
  }
  std::map<std::string, ClaimValue> snap;
  bool complete = false;
  for (int i = 0; i < 1000000; ++i) {
    kvEntry* e = nullptr;
    s = kvWatcher_Next(&e, w, o_.kv_timeout_ms);
    if (s != NATS_OK) break;
    if (e == nullptr) {
      complete = true;
      break;
    }
    if (kvEntry_Operation(e) == kvOp_Put) {
      auto name = key_to_name(kvEntry_Key(e));
      const char* v = kvEntry_ValueString(e);
      auto c = parse_claim(v ? v : "");
      if (name && c) snap[*name] = *c;
    }
    kvEntry_Destroy(e);
  }
  kvWatcher_Destroy(w);
  if (!complete) {
    trace("reading the claims: " + nats_error(s));
    return;
  }
  // Proxies whose claim has gone, or moved to us.
  std::vector<std::string> gone;
  for (const auto& [name, owner] : proxies_) {
    auto it = snap.find(name);
    if (it == snap.end() || it->second.owner == net_ || it->second.host == host_key_) gone.push_back(name);
  }
  for (const auto& name : gone) unproxy(name);
  // Claims of ours that another bridge now holds (our lease ran out).
  std::vector<std::string> lost;
  for (const auto& [name, c] : claims_) {
    auto it = snap.find(name);
    if (it != snap.end() && it->second.host != host_key_) lost.push_back(name);
  }
  for (const auto& name : lost) {
    std::uint32_t binder = claims_[name].binder;
    claims_.erase(name);
    refused(name, binder, snap[name].owner);
  }
  for (const auto& [name, c] : snap) {
    if (c.host == host_key_) continue;  // ours, or an earlier run of ours
    proxies_.count(name) ? void(proxies_[name] = c.owner) : void();
    if (proxies_.count(name) || local_repliers_.count(name)) {
      if (local_repliers_.count(name) && !claims_.count(name)) {
        refused(name, local_repliers_[name], c.owner);
      }
      continue;
    }
    auto r = bus_.bind(name, true);
    if (r) {
      proxies_[name] = c.owner;
      info("proxy replier for " + name + " (bridge " + std::to_string(c.owner) + ", Ksock " +
           std::to_string(c.binder) + " there)");
    } else if (r.error() != Errc::eaddrinuse) {
      // EADDRINUSE: a local replier bound it meanwhile; its bind event follows.
      error("cannot bind " + name + " as proxy replier: " + errname(r.error()));
    }
  }
  // Local repliers without a claim: the name is free again.
  for (const auto& [name, binder] : local_repliers_) {
    if (claims_.count(name)) continue;
    auto it = snap.find(name);
    if (it == snap.end() || it->second.host == host_key_) claim(name, binder);
  }
  // Stale claims of an earlier run of ours whose replier has gone.
  for (const auto& [name, c] : snap) {
    if (c.host != host_key_ || claims_.count(name) || local_repliers_.count(name)) continue;
    claims_[name] = Claim{0, c.binder};
    kvEntry* e = nullptr;
    auto key = name_to_key(name);
    if (kvStore_Get(&e, kv_, key->c_str()) == NATS_OK) {
      claims_[name].rev = kvEntry_Revision(e);
      kvEntry_Destroy(e);
      release(name);
    } else {
      claims_.erase(name);
    }
  }
}

// ---- listeners: the subscriptions follow the bindings report (§9.1) ----

void Bridge::poll_bindings() {
  next_bindings_ = Clock::now() + milliseconds(o_.bindings_poll_ms);
  auto report = bus_.bindings_report();
  if (!report) {
    trace("cannot read the bindings report: " + errname(report.error()));
    return;
  }
  std::set<std::string> wanted;  // KBUS bindings to subscribe to
  std::map<std::string, std::uint32_t> repliers;
  std::istringstream in(*report);
  std::string text;
  while (std::getline(in, text)) {
    if (text.empty() || text[0] == '#') continue;
    std::istringstream fields(text);
    std::string bus_field, kind, name;
    std::uint64_t ksock = 0, pid = 0;
    if (!(fields >> bus_field >> ksock >> pid >> kind >> name)) continue;
    if (!bus_field.empty() && bus_field.back() == ':') bus_field.pop_back();
    if (bus_field != std::to_string(o_.bus) || ksock == self_) continue;
    if (kind == "R") {
      repliers[name] = static_cast<std::uint32_t>(ksock);
      continue;
    }
    if (kind != "L" || name.starts_with("$.KBUS.")) continue;
    for (const auto& f : o_.names) {
      if (covers(f, name)) {
        wanted.insert(name);
      } else if (covers(name, f)) {
        wanted.insert(f);
      }
    }
  }
  if (rescan_repliers_) {
    rescan_repliers_ = false;
    for (const auto& [name, binder] : local_repliers_) {
      if (!repliers.count(name) || repliers[name] != binder) local_unbind(name, binder);
    }
    for (const auto& [name, binder] : repliers) {
      if (!local_repliers_.count(name)) local_bind(name, binder);
    }
  }
  std::set<std::string> subjects;
  for (const auto& name : wanted) {
    if (auto s = name_to_subject(o_.prefix, name)) subjects.insert(*s);
  }
  bool changed = false;
  for (auto it = ann_subs_.begin(); it != ann_subs_.end();) {
    if (subjects.count(it->first)) {
      ++it;
      continue;
    }
    natsSubscription_Unsubscribe(it->second);
    natsSubscription_Destroy(it->second);
    info("unsubscribed from " + it->first);
    it = ann_subs_.erase(it);
  }
  for (const auto& s : subjects) {
    if (ann_subs_.count(s)) continue;
    natsSubscription* sub = nullptr;
    if (!subscribe(s, &sub)) continue;
    ann_subs_[s] = sub;
    changed = true;
  }
  if (changed) {
    // The server has the subscriptions once this round trip is done.
    natsConnection_FlushTimeout(nc_, o_.kv_timeout_ms);
    for (const auto& s : subjects) info("subscribed to " + s);
  }
}

}  // namespace

std::string usage(const std::string& program) {
  return "Usage: " + program +
         " [-b BUS] [--prefix PREFIX] [-m NAME]... [options] URL[,URL...]\n"
         "\n"
         "Joins bus BUS of the local kbusd to a NATS system (docs/fleet.md): the\n"
         "Announcements, Requests and Replies of every bridged bus reach the others.\n"
         "\n"
         "  URL                nats://host:port (tls://, user:password@ as NATS takes\n"
         "                     them); several, comma-separated, for a cluster\n"
         "  -b, --bus N        the bus number, default 0\n"
         "  -d, --dir DIR      the bus socket directory (default $KBUS_DIR, ...)\n"
         "  --prefix PREFIX    the subject prefix, default kbus ($.A.B <-> kbus.A.B)\n"
         "  -m, --message NAME the names to bridge (repeatable), default '$.*'\n"
         "  --id N             this bridge's network id, unique in the fleet\n"
         "                     (default: a free one is picked)\n"
         "  --creds FILE       NATS user credentials (JWT + nkey seed)\n"
         "  --tls-ca FILE      the CA certificates that sign the servers' certificates\n"
         "  --tls-cert FILE --tls-key FILE   a client certificate\n"
         "  --lease-ms MS      the replier claims' lease, default 10000\n"
         "  --claims-poll-ms MS      how often the claims are re-read, default 1000\n"
         "  --bindings-poll-ms MS    how often the listeners are re-read, default 250\n"
         "  --request-timeout-ms MS  longest wait for a remote answer, default 60000\n"
         "  --probe-ms MS      check the serving bridge after this wait, default 1000\n"
         "  --kv-timeout-ms MS longest wait for one JetStream call, default 3000\n"
         "  --kv-replicas N    replicas of the claims bucket if this bridge creates it\n"
         "  -v, --verbose LEVEL  0 errors only, 1 progress (default), 2 every message\n"
         "  -h, --help         this text\n"
         "\n"
         "Runs until SIGINT or SIGTERM (exit 0). Exit status 1: bad usage; 2: the\n"
         "bus or NATS failed; 3: the --id is held by another bridge.\n";
}

ParsedArgs parse_args(const std::vector<std::string>& args) {
  ParsedArgs p;
  Options& o = p.options;
  auto error = [&](std::string text) {
    p.outcome = ParsedArgs::Outcome::kError;
    p.error = std::move(text);
    return p;
  };
  util::ArgReader r(args);
  while (const std::string* arg = r.next()) {
    const std::string& a = *arg;
    // "" if the switch has a number in [lo, hi] (in n), else what is wrong.
    auto number = [&](long long lo, long long hi, long long& out, const char* what) -> std::string {
      auto got = r.number(lo, hi);
      if (got.status == util::ArgReader::Number::Status::kMissing) return "switch " + a + " needs " + what;
      if (!got.ok()) {
        return a + " '" + got.text + "': " + what + " must be a number " + std::to_string(lo) + ".." +
               std::to_string(hi);
      }
      out = got.value;
      return {};
    };
    long long n = 0;
    std::string bad;
    if (a == "-h" || a == "--help") {
      p.outcome = ParsedArgs::Outcome::kHelp;
      return p;
    } else if (a == "-b" || a == "--bus" || a == "-k") {
      if (!(bad = number(0, 255, n, "a bus number")).empty()) return error(bad);
      o.bus = static_cast<int>(n);
    } else if (a == "-d" || a == "--dir") {
      if (!r.value(o.dir)) return error("switch " + a + " needs a directory");
    } else if (a == "--prefix") {
      if (!r.value(o.prefix)) return error("switch --prefix needs a subject prefix");
      if (auto why = prefix_problem(o.prefix); !why.empty()) {
        return error("--prefix '" + o.prefix + "': " + why);
      }
    } else if (a == "-m" || a == "--message") {
      std::string name;
      if (!r.value(name)) return error("switch " + a + " needs a message name");
      if (auto why = core::name_problem(name, false); !why.empty()) {
        return error("-m '" + name + "' is not a KBUS name: " + why);
      }
      o.names.push_back(name);
    } else if (a == "--id") {
      if (!(bad = number(1, 0x7FFFFFFF, n, "a network id")).empty()) return error(bad);
      o.id = static_cast<std::uint32_t>(n);
    } else if (a == "--creds") {
      if (!r.value(o.creds)) return error("switch --creds needs a file");
    } else if (a == "--tls-ca") {
      if (!r.value(o.tls_ca)) return error("switch --tls-ca needs a file");
    } else if (a == "--tls-cert") {
      if (!r.value(o.tls_cert)) return error("switch --tls-cert needs a file");
    } else if (a == "--tls-key") {
      if (!r.value(o.tls_key)) return error("switch --tls-key needs a file");
    } else if (a == "--lease-ms") {
      if (!(bad = number(300, 3600000, n, "a lease in ms")).empty()) return error(bad);
      o.lease_ms = static_cast<int>(n);
    } else if (a == "--claims-poll-ms") {
      if (!(bad = number(10, 3600000, n, "an interval in ms")).empty()) return error(bad);
      o.claims_poll_ms = static_cast<int>(n);
    } else if (a == "--bindings-poll-ms") {
      if (!(bad = number(10, 3600000, n, "an interval in ms")).empty()) return error(bad);
      o.bindings_poll_ms = static_cast<int>(n);
    } else if (a == "--request-timeout-ms") {
      if (!(bad = number(10, 86400000, n, "a timeout in ms")).empty()) return error(bad);
      o.request_timeout_ms = static_cast<int>(n);
    } else if (a == "--probe-ms") {
      if (!(bad = number(10, 86400000, n, "an interval in ms")).empty()) return error(bad);
      o.probe_ms = static_cast<int>(n);
    } else if (a == "--kv-timeout-ms") {
      if (!(bad = number(10, 600000, n, "a timeout in ms")).empty()) return error(bad);
      o.kv_timeout_ms = static_cast<int>(n);
    } else if (a == "--kv-replicas") {
      if (!(bad = number(1, 5, n, "a replica count")).empty()) return error(bad);
      o.kv_replicas = static_cast<int>(n);
    } else if (a == "-v" || a == "--verbose") {
      if (!(bad = number(0, 2, n, "a level")).empty()) return error(bad);
      o.verbosity = static_cast<int>(n);
    } else if (!a.empty() && a[0] == '-') {
      return error("unknown switch " + a + " (see --help)");
    } else {
      std::size_t start = 0;
      while (start <= a.size()) {
        std::size_t comma = a.find(',', start);
        std::string url = a.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (url.empty()) return error("empty server URL in '" + a + "'");
        o.urls.push_back(url);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    }
  }
  if (o.urls.empty()) return error("give the NATS server URL(s), e.g. nats://127.0.0.1:4222");
  if (o.tls_cert.empty() != o.tls_key.empty()) return error("--tls-cert and --tls-key go together");
  return p;
}

int run(const Options& options) {
  auto b = std::make_unique<Bridge>(options);
  const int rc = b->run();
  b->teardown();
  // Stops libnats' threads and frees what it holds. Only then may the Bridge
  // go: the connection's closed callback runs on a libnats thread after
  // natsConnection_Close returns and pushes into the Bridge's event queue
  // (destroying the Bridge first was a use after free, seen by ASan).
  nats_CloseAndWait(2000);
  b.reset();
  return rc;
}

int main_with_args(const std::string& program, const std::vector<std::string>& args) {
  ParsedArgs p = parse_args(args);
  if (p.outcome == ParsedArgs::Outcome::kHelp) {
    std::fputs(usage(program).c_str(), stdout);
    return kExitOk;
  }
  if (p.outcome == ParsedArgs::Outcome::kError) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(), p.error.c_str());
    return kExitUsage;
  }
  return run(p.options);
}

}  // namespace kbus::bridge
