// preload/device.cpp - see device.hpp.
//
// Locking: the table's mutex guards the map from descriptors to Devices;
// each Device's KsockEntry mutex is held by every operation on its Ksock, so
// two threads using one descriptor (or two descriptors of one open file)
// take turns, as calls into the original's driver did. No thread holds a
// Device's mutex while it takes the table's. Operations never block for
// long: read, write and ioctl of the original never waited, and neither do
// their kbusd counterparts; waiting is poll()'s business, which the kernel
// does on the descriptor itself.
#include "preload/device.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "capi/ksock_table.hpp"
#include "capi/translate.hpp"
#include "capi/write_send.hpp"
#include "kbus/ksock.hpp"
#include "libkbus/kbus_defns.h"
#include "preload/real.hpp"

namespace kbus::preload {
namespace {

// One open file of /dev/kbusN: one Ksock, whatever number of descriptors
// (dup, fork) name it.
struct Device {
  capi::KsockEntry k;  // k.mu is held by every operation on k.ksock
  int bus = 0;
  int accmode = O_RDWR;  // as opened: O_RDONLY, O_WRONLY or O_RDWR
  pid_t opener = 0;      // the process that opened it
  // Inherited through fork(): the Ksock belongs to the parent; here every
  // operation fails with ENXIO (docs/decisions.md D19).
  bool foreign = false;
  bool warned = false;  // the ENXIO explanation has been printed
  int fds = 0;          // descriptors naming it (under the table's mutex)
};

struct FdInfo {
  std::shared_ptr<Device> dev;
  bool cloexec = false;  // FD_CLOEXEC as the program sees it (see device_open)
  dev_t st_dev = 0;      // the file the descriptor was made for
  ino_t st_ino = 0;
};

void set_errno(int e) noexcept { errno = e; }

int errno_of(Errc e) noexcept { return -capi::to_c_result(e); }

// Copies to the caller's memory; false if `dst` is not writable memory (the
// kernel's copy_to_user failing: EFAULT). See capi::copy_from_caller.
bool copy_to_caller(void* dst, const void* src, std::size_t n) {
  if (n == 0) return true;
  if (dst == nullptr) return false;
  if (!capi::can_check_caller_memory()) {
    std::memcpy(dst, src, n);
    return true;
  }
  iovec local{const_cast<void*>(src), n};
  iovec remote{dst, n};
  return ::process_vm_writev(::getpid(), &local, 1, &remote, 1, 0) == static_cast<ssize_t>(n);
}

template <class T>
bool get_from_caller(const void* p, T& out) {
  std::string bytes;
  if (!capi::copy_from_caller(bytes, p, sizeof(T))) return false;
  std::memcpy(&out, bytes.data(), sizeof(T));
  return true;
}

template <class T>
bool put_to_caller(void* p, const T& v) {
  return copy_to_caller(p, &v, sizeof(T));
}

// Closes the Ksock of a Device whose last descriptor has gone: CLOSE
// (§7.2), or, in a child of fork(), only this process's hold on it.
void release(const std::shared_ptr<Device>& d) {
  if (!d) return;
  std::lock_guard<std::mutex> lk(d->k.mu);
  Inside in;
  if (d->foreign) {
    d->k.ksock.abandon();
  } else {
    d->k.ksock.close();
  }
}

class FdTable {
 public:
  static FdTable& instance() {
    static FdTable* t = new FdTable;  // never destroyed: used until exit
    return *t;
  }

  // Whether fd might be a KBUS descriptor (cheap; no lock).
  bool maybe(int fd) const noexcept {
    if (fd < 0) return false;
    if (fd < kFast) return fast_[fd].load(std::memory_order_acquire) != 0;
    return slow_.load(std::memory_order_acquire) > 0;
  }

  // The mapping of fd, if it still names the file it was made for. A
  // descriptor closed behind this layer's back (close_range, or a close
  // inside the C library) is forgotten here, its Device released if that
  // was its last descriptor.
  std::optional<FdInfo> find(int fd) {
    if (!maybe(fd)) return std::nullopt;
    FdInfo info;
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = fds_.find(fd);
      if (it == fds_.end()) return std::nullopt;
      info = it->second;
    }
    struct stat st;
    const int saved = errno;
    const bool same = ::fstat(fd, &st) == 0 && st.st_dev == info.st_dev && st.st_ino == info.st_ino;
    errno = saved;
    if (!same) {
      release(remove(fd).second);
      return std::nullopt;
    }
    return info;
  }

  void add(int fd, FdInfo info) {
    std::shared_ptr<Device> replaced;
    {
      std::lock_guard<std::mutex> lk(mu_);
      ++info.dev->fds;
      auto it = fds_.find(fd);
      if (it != fds_.end()) {
        if (--it->second.dev->fds == 0) replaced = it->second.dev;
        it->second = std::move(info);
      } else {
        fds_.emplace(fd, std::move(info));
        mark(fd, true);
      }
    }
    release(replaced);
  }

  // Removes the mapping of fd: (whether there was one, the Device if fd was
  // its last descriptor).
  std::pair<bool, std::shared_ptr<Device>> remove(int fd) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = fds_.find(fd);
    if (it == fds_.end()) return {false, nullptr};
    std::shared_ptr<Device> d = std::move(it->second.dev);
    fds_.erase(it);
    mark(fd, false);
    if (--d->fds == 0) return {true, std::move(d)};
    return {true, nullptr};
  }

  bool mapped(int fd) {
    if (!maybe(fd)) return false;
    std::lock_guard<std::mutex> lk(mu_);
    return fds_.count(fd) != 0;
  }

  void set_cloexec(int fd, bool on) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = fds_.find(fd);
    if (it != fds_.end()) it->second.cloexec = on;
  }

 private:
  FdTable() { ::pthread_atfork(&FdTable::prepare, &FdTable::parent, &FdTable::child); }

  void mark(int fd, bool on) noexcept {
    if (fd < kFast) {
      fast_[fd].store(on ? 1 : 0, std::memory_order_release);
    } else {
      slow_.fetch_add(on ? 1 : -1, std::memory_order_acq_rel);
    }
  }

  // fork(): the table and every Device are locked across it, so that the
  // child's copy is consistent; the child then lets go of every Ksock.
  static void prepare() {
    FdTable& t = instance();
    t.mu_.lock();
    for (auto& [fd, info] : t.fds_) {
      if (std::find(t.held_.begin(), t.held_.end(), info.dev) == t.held_.end()) {
        t.held_.push_back(info.dev);
      }
    }
    for (auto& d : t.held_) d->k.mu.lock();
  }
  static void parent() {
    FdTable& t = instance();
    for (auto& d : t.held_) d->k.mu.unlock();
    t.held_.clear();
    t.mu_.unlock();
  }
  static void child() {
    FdTable& t = instance();
    for (auto& d : t.held_) {
      if (!d->foreign) {
        d->foreign = true;
        d->warned = false;
        Inside in;
        d->k.ksock.abandon();
      }
      d->k.mu.unlock();
    }
    t.held_.clear();
    t.mu_.unlock();
  }

  static constexpr int kFast = 65536;
  std::mutex mu_;
  std::unordered_map<int, FdInfo> fds_;
  std::atomic<unsigned char> fast_[kFast] = {};
  std::atomic<int> slow_{0};
  std::vector<std::shared_ptr<Device>> held_;  // locked across fork()
};

// A Device inherited through fork(): says why it cannot be used, once.
int foreign_error(Device& d, int fd) {
  if (!d.warned) {
    d.warned = true;
    std::fprintf(stderr,
                 "kbus-dev: /dev/kbus%d (descriptor %d) was opened by process %d before fork(); "
                 "a Ksock cannot be shared by two processes, so it does not work in process %d "
                 "(ENXIO). Open /dev/kbus%d again in this process.\n",
                 d.bus, fd, static_cast<int>(d.opener), static_cast<int>(::getpid()), d.bus);
  }
  set_errno(ENXIO);
  return -1;
}

int fail(int e) {
  set_errno(e);
  return -1;
}

// Runs op(device) with the device locked and this thread inside the layer:
// nullopt if fd is not a KBUS descriptor; ENXIO in a child of fork(); EBADF
// if the Ksock has been closed. On success errno is left as it was, as a
// system call leaves it.
template <class R, class F>
std::optional<R> with_device(int fd, F&& op) {
  const int saved = errno;
  auto info = FdTable::instance().find(fd);
  if (!info) return std::nullopt;
  Device& d = *info->dev;
  std::lock_guard<std::mutex> lk(d.k.mu);
  if (d.foreign) return static_cast<R>(foreign_error(d, fd));
  Inside in;
  if (!d.k.ksock.is_open()) return static_cast<R>(fail(EBADF));
  try {
    const R r = static_cast<R>(op(d));
    if (r >= 0) errno = saved;
    return r;
  } catch (const std::bad_alloc&) {
    return static_cast<R>(fail(ENOMEM));
  }
}

// kbusd refuses (by disconnecting) a request frame longer than its
// --max-frame-size, which is at least its absolute maximum message size +
// 1024, and at least 1124 bytes (docs/protocol.md §2). A write() is sent in
// WRITE frames no longer than that: writes may be split anywhere (§4.2-8).
constexpr std::size_t kOpLen = 4;
constexpr std::size_t kFrameAlwaysAccepted = 1024 + 100;

Result<std::size_t> write_chunk(capi::KsockEntry& e, std::size_t total) {
  if (kOpLen + total <= kFrameAlwaysAccepted) return total;
  if (e.abs_max_msg_size == 0) {
    auto r = e.ksock.try_set_max_message_size(1);  // 1: the absolute maximum
    if (!r) return r.error();
    e.abs_max_msg_size = *r;
  }
  return std::size_t{e.abs_max_msg_size} + 1024 - kOpLen;
}

// ---- the operations of §4.5 ----

// BIND / UNBIND (§4.6). The kernel copied the structure, then checked the
// length before it read the name: a length of 0 is EBADMSG (the daemon says
// so of an empty name), one over KBUS_MAX_NAME_LEN is ENAMETOOLONG without
// the name being read.
int ioc_bind(Device& d, void* arg, bool bind) {
  kbus_bind_request br{};
  if (!get_from_caller(arg, br)) return fail(EFAULT);
  if (br.name_len > KBUS_MAX_NAME_LEN) return fail(ENAMETOOLONG);
  std::string name;
  if (!capi::copy_from_caller(name, br.name, br.name_len)) return fail(EFAULT);
  auto r = bind ? d.k.ksock.try_bind(name, br.is_replier != 0)
                : d.k.ksock.try_unbind(name, br.is_replier != 0);
  return r ? 0 : fail(errno_of(r.error()));
}

// REPLIER: 1 and return_id if a replier is bound to exactly that name, else
// 0 (§4.6). Lengths 0 and over KBUS_MAX_NAME_LEN are ENAMETOOLONG.
int ioc_replier(Device& d, void* arg) {
  kbus_bind_query q{};
  if (!get_from_caller(arg, q)) return fail(EFAULT);
  if (q.name_len > KBUS_MAX_NAME_LEN) return fail(ENAMETOOLONG);
  std::string name;
  if (!capi::copy_from_caller(name, q.name, q.name_len)) return fail(EFAULT);
  auto r = d.k.ksock.try_find_replier(name);
  if (!r) return fail(errno_of(r.error()));
  const std::uint32_t id = r->value_or(0);
  // The caller's structure need not be aligned (Python's fcntl.ioctl passes
  // a byte buffer): address the field by its offset.
  void* return_id = static_cast<char*>(arg) + offsetof(kbus_bind_query, return_id);
  if (!put_to_caller(return_id, id)) return fail(EFAULT);
  return r->has_value() ? 1 : 0;
}

// An operation with a u32 result written to *arg (returns 0).
template <class R>
int put_u32_result(const R& r, void* arg) {
  if (!r) return fail(errno_of(r.error()));
  const std::uint32_t v = *r;
  return put_to_caller(arg, v) ? 0 : fail(EFAULT);
}

// An operation taking a u32 from *arg and writing its u32 result back.
template <class F>
int inout_u32(void* arg, F&& op) {
  std::uint32_t v = 0;
  if (!get_from_caller(arg, v)) return fail(EFAULT);
  auto r = op(v);
  if (!r) return fail(errno_of(r.error()));
  const std::uint32_t out = static_cast<std::uint32_t>(*r);
  return put_to_caller(arg, out) ? 0 : fail(EFAULT);
}

int ioc_send(Device& d, void* arg) {
  kbus_msg_id_t id{0, 0};
  const int rc = capi::send_written(d.k, &id);
  if (rc < 0 && rc != -EAGAIN) return fail(-rc);
  // The id assigned (also when the send is now pending, §5.2-7).
  if (!put_to_caller(arg, id)) return fail(EFAULT);
  return rc < 0 ? fail(-rc) : 0;
}

int kbus_ioctl(Device& d, unsigned int cmd, void* arg) {
  Ksock& k = d.k.ksock;
  switch (cmd) {
    case KBUS_IOC_RESET: {
      auto r = k.try_reset();
      return r ? 0 : fail(errno_of(r.error()));
    }
    case KBUS_IOC_BIND:
      return ioc_bind(d, arg, true);
    case KBUS_IOC_UNBIND:
      return ioc_bind(d, arg, false);
    case KBUS_IOC_KSOCKID:
      return put_u32_result(k.try_ksock_id(), arg);
    case KBUS_IOC_REPLIER:
      return ioc_replier(d, arg);
    case KBUS_IOC_NEXTMSG: {
      auto r = k.try_next_msg();
      if (!r) return fail(errno_of(r.error()));
      const std::uint32_t len = *r;
      if (!put_to_caller(arg, len)) return fail(EFAULT);
      return len > 0 ? 1 : 0;  // 1 if a message was made current (§4.5)
    }
    case KBUS_IOC_LENLEFT:
      return put_u32_result(k.try_len_left(), arg);
    case KBUS_IOC_SEND:
      return ioc_send(d, arg);
    case KBUS_IOC_DISCARD: {
      auto r = k.try_discard();
      d.k.write.reset();
      return r ? 0 : fail(errno_of(r.error()));
    }
    case KBUS_IOC_LASTSENT: {
      auto r = k.try_last_sent();
      if (!r) return fail(errno_of(r.error()));
      const kbus_msg_id_t id = capi::to_c(*r);
      return put_to_caller(arg, id) ? 0 : fail(EFAULT);
    }
    case KBUS_IOC_MAXMSGS:
      return inout_u32(arg, [&](std::uint32_t v) { return k.try_set_max_messages(v); });
    case KBUS_IOC_NUMMSGS:
      return put_u32_result(k.try_num_messages(), arg);
    case KBUS_IOC_UNREPLIEDTO:
      return put_u32_result(k.try_num_unreplied_to(), arg);
    case KBUS_IOC_MSGONLYONCE:
      return inout_u32(arg,
                       [&](std::uint32_t v) { return k.try_only_once(static_cast<Toggle>(v)); });
    case KBUS_IOC_VERBOSE:
      return inout_u32(arg, [&](std::uint32_t v) { return k.try_verbose(static_cast<Toggle>(v)); });
    case KBUS_IOC_NEWDEVICE:
      return put_u32_result(k.try_new_device(), arg);
    case KBUS_IOC_REPORTREPLIERBINDS:
      return inout_u32(
          arg, [&](std::uint32_t v) { return k.try_report_replier_binds(static_cast<Toggle>(v)); });
    case KBUS_IOC_MAXMSGSIZE:
      return inout_u32(arg, [&](std::uint32_t v) { return k.try_set_max_message_size(v); });
    default:
      return fail(ENOTTY);  // not a KBUS operation (the driver's answer)
  }
}

}  // namespace

int device_open(int bus, int flags) {
  const int saved = errno;
  auto mode = capi::mode_from_open_flags(flags);
  if (!mode) return fail(EINVAL);
  if (flags & O_DIRECTORY) return fail(ENOTDIR);
  Inside in;
  try {
    auto d = std::make_shared<Device>();
    d->bus = bus;
    d->accmode = flags & O_ACCMODE;
    d->opener = ::getpid();
    auto k = Ksock::try_open(bus, *mode);  // the bus directory: $KBUS_DIR, ...
    if (!k) return fail(errno_of(k.error()));
    d->k.ksock = std::move(k.value());
    // The device exists: O_CREAT|O_EXCL fails as on any existing file.
    if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) {
      d->k.ksock.close();
      return fail(EEXIST);
    }
    const int poll_fd = d->k.ksock.fileno();
    if (poll_fd < 0) {  // the daemon could not make one (out of descriptors)
      d->k.ksock.close();
      return fail(EMFILE);
    }
    // The program's descriptor is a duplicate of the poll fd (the Ksock
    // keeps its own), always close-on-exec for real: the Ksock lives in this
    // process's memory and cannot cross exec. FD_CLOEXEC as asked is what
    // F_GETFD reports (docs/decisions.md D19).
    const int fd = real().fcntl(poll_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
      const int e = errno;
      d->k.ksock.close();
      return fail(e);
    }
    if (flags & O_NONBLOCK) {
      const int fl = real().fcntl(fd, F_GETFL);
      if (fl >= 0) (void)real().fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      const int e = errno;
      real().close(fd);
      d->k.ksock.close();
      return fail(e);
    }
    FdTable::instance().add(fd,
                            FdInfo{std::move(d), (flags & O_CLOEXEC) != 0, st.st_dev, st.st_ino});
    errno = saved;
    return fd;
  } catch (const std::bad_alloc&) {
    return fail(ENOMEM);
  }
}

std::optional<ssize_t> device_read(int fd, void* buf, size_t count) {
  return with_device<ssize_t>(fd, [&](Device& d) -> ssize_t {
    // §4.3: min(count, bytes left) of the current message; 0 at its end or
    // with no current message; EBADF if not open for reading (the daemon's).
    const auto n = static_cast<std::uint32_t>(std::min<size_t>(count, 0xFFFFFFFFu));
    auto r = d.k.ksock.try_read_data(n);
    if (!r) return fail(errno_of(r.error()));
    if (!copy_to_caller(buf, r->data(), r->size())) return fail(EFAULT);
    return static_cast<ssize_t>(r->size());
  });
}

std::optional<ssize_t> device_write(int fd, const void* buf, size_t count) {
  return with_device<ssize_t>(fd, [&](Device& d) -> ssize_t {
    // §4.2: all the bytes are consumed, or the write fails (and, but for
    // EALREADY, the partial message is gone).
    std::string bytes;
    if (!capi::copy_from_caller(bytes, buf, count)) return fail(EFAULT);
    auto chunk = write_chunk(d.k, bytes.size());
    if (!chunk) return fail(errno_of(chunk.error()));
    std::string_view rest = bytes;
    do {
      std::string_view piece = rest.substr(0, *chunk);
      const int rc = capi::write_bytes(d.k, piece);
      if (rc < 0) return fail(-rc);
      rest.remove_prefix(piece.size());
    } while (!rest.empty());
    return static_cast<ssize_t>(count);
  });
}

std::optional<int> device_ioctl(int fd, unsigned long request, void* arg) {
  // The kernel passes the command on as an unsigned int.
  const auto cmd = static_cast<unsigned int>(request);
  switch (cmd) {
    // Descriptor-level requests that the kernel itself answers.
    case FIOCLEX:
    case FIONCLEX:
      if (!FdTable::instance().find(fd)) return std::nullopt;
      FdTable::instance().set_cloexec(fd, cmd == FIOCLEX);
      return 0;
    case FIONBIO:
      return std::nullopt;  // O_NONBLOCK of the open file: the real one's
    case FIOASYNC: {
      if (!FdTable::instance().find(fd)) return std::nullopt;
      // The original had no fasync: turning it on is ENOTTY.
      int on = 0;
      if (!get_from_caller(arg, on)) return fail(EFAULT);
      return on ? fail(ENOTTY) : 0;
    }
    default:
      break;
  }
  return with_device<int>(fd, [&](Device& d) { return kbus_ioctl(d, cmd, arg); });
}

std::optional<int> device_close(int fd) {
  FdTable& t = FdTable::instance();
  if (!t.maybe(fd)) return std::nullopt;
  auto [found, last] = t.remove(fd);
  if (!found) return std::nullopt;
  const int rc = real().close(fd);
  const int e = errno;
  release(last);  // the last descriptor of the open file: CLOSE (§4.1, §7.2)
  errno = e;
  return rc;
}

std::optional<int> device_fcntl(int fd, int cmd, unsigned long arg, bool is_fcntl64) {
  auto info = FdTable::instance().find(fd);
  if (!info) return std::nullopt;
  auto call = is_fcntl64 ? real().fcntl64 : real().fcntl;
  switch (cmd) {
    case F_DUPFD:
    case F_DUPFD_CLOEXEC: {
      const int nfd = call(fd, F_DUPFD_CLOEXEC, arg);
      if (nfd < 0) return -1;
      FdTable::instance().add(
          nfd, FdInfo{info->dev, cmd == F_DUPFD_CLOEXEC, info->st_dev, info->st_ino});
      return nfd;
    }
    case F_GETFD:
      return info->cloexec ? FD_CLOEXEC : 0;
    case F_SETFD:
      FdTable::instance().set_cloexec(fd, (arg & FD_CLOEXEC) != 0);
      return 0;
    case F_GETFL: {
      const int fl = call(fd, F_GETFL);
      if (fl < 0) return -1;
      return (fl & ~O_ACCMODE) | info->dev->accmode;
    }
    default:
      return std::nullopt;  // F_SETFL, locks, owners: the open file's own
  }
}

std::optional<int> device_dup(int fd) {
  auto info = FdTable::instance().find(fd);
  if (!info) return std::nullopt;
  const int nfd = real().fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (nfd < 0) return -1;
  FdTable::instance().add(nfd, FdInfo{info->dev, false, info->st_dev, info->st_ino});
  return nfd;
}

std::optional<int> device_dup3(int oldfd, int newfd, int flags) {
  FdTable& t = FdTable::instance();
  auto info = t.find(oldfd);
  if (!info && !t.mapped(newfd)) return std::nullopt;
  if (oldfd == newfd) return std::nullopt;  // nothing changes hands
  if (flags != -1 && (flags & ~O_CLOEXEC) != 0) return fail(EINVAL);
  int rc;
  if (info) {
    rc = real().dup3(oldfd, newfd, O_CLOEXEC);
  } else {
    rc = flags == -1 ? real().dup2(oldfd, newfd) : real().dup3(oldfd, newfd, flags);
  }
  if (rc < 0) return -1;
  // newfd was closed by the call: it no longer names its old Device.
  const int e = errno;
  if (info) {
    t.add(newfd,
          FdInfo{info->dev, flags != -1 && (flags & O_CLOEXEC) != 0, info->st_dev, info->st_ino});
  } else {
    release(t.remove(newfd).second);
  }
  errno = e;
  return rc;
}

}  // namespace kbus::preload
