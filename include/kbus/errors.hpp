// kbus/errors.hpp - error values shared by every kbus layer.
//
// kbus reports failures with the original KBUS errno values (KBUS-SPEC.md
// §4-§5, §13.5). `Errc` names exactly those numbers; `Result<T>` carries a
// value or an Errc; `Error` is the exception the throwing C++ calls raise.
#pragma once

#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "kbus/export.hpp"

namespace kbus {

// The numbers are the errno values: static_cast<int>(Errc::ebadmsg) == EBADMSG.
enum class Errc : int {
  ok = 0,
  eaddrinuse = EADDRINUSE,
  eaddrnotavail = EADDRNOTAVAIL,
  ealready = EALREADY,
  ebadmsg = EBADMSG,
  ebusy = EBUSY,
  econnrefused = ECONNREFUSED,
  einval = EINVAL,
  emsgsize = EMSGSIZE,
  enametoolong = ENAMETOOLONG,
  enoent = ENOENT,
  enolck = ENOLCK,
  enomsg = ENOMSG,
  epipe = EPIPE,
  efault = EFAULT,
  enomem = ENOMEM,
  eagain = EAGAIN,
  ebadf = EBADF,
  enotty = ENOTTY,
  eproto = EPROTO,
  econnreset = ECONNRESET,
  etimedout = ETIMEDOUT,
  eacces = EACCES,
  enfile = ENFILE,  // a bus already has its maximum of Ksocks open
  emfile = EMFILE,  // this user already has its maximum of Ksocks open
  eperm = EPERM,    // the bus directory is not safe to use (docs/reliability.md §9)
};

constexpr int to_errno(Errc e) noexcept { return static_cast<int>(e); }

// "EPIPE" for Errc::epipe; "E<number>" for numbers kbus does not name.
KBUS_EXPORT std::string errno_name(int err);
// The errno number for a mnemonic such as "EPIPE" (aliases too), or 0.
KBUS_EXPORT int errno_from_name(std::string_view name);
// Every errno number the system names, ascending.
KBUS_EXPORT std::vector<int> known_errnos();
// The KBUS meaning of an errno (KBUS-SPEC.md §13.5), or "" if it has none.
KBUS_EXPORT std::string kbus_meaning(int err);

// The exception thrown by kbus' throwing calls. code().value() is the errno.
class KBUS_EXPORT Error : public std::system_error {
 public:
  explicit Error(Errc e, const std::string& what = {})
      : std::system_error(to_errno(e), std::generic_category(), what), errc_(e) {}
  explicit Error(int err, const std::string& what = {})
      : std::system_error(err, std::generic_category(), what), errc_(static_cast<Errc>(err)) {}
  Errc errc() const noexcept { return errc_; }
  int error_number() const noexcept { return to_errno(errc_); }

 private:
  Errc errc_;
};

// A value of T, or an error. Cheap and explicit; no exceptions.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Errc e) : err_(e) {}                    // NOLINT(google-explicit-constructor)
  bool ok() const noexcept { return err_ == Errc::ok; }
  explicit operator bool() const noexcept { return ok(); }
  Errc error() const noexcept { return err_; }
  T& value() & { return value_; }
  const T& value() const& { return value_; }
  T&& value() && { return std::move(value_); }
  T& operator*() & { return value_; }
  const T& operator*() const& { return value_; }
  T* operator->() { return &value_; }
  const T* operator->() const { return &value_; }
  // The value, or throws kbus::Error.
  T& get(const char* what = "") & {
    if (!ok()) throw Error(err_, what);
    return value_;
  }
  T get(const char* what = "") && {
    if (!ok()) throw Error(err_, what);
    return std::move(value_);
  }

 private:
  T value_{};
  Errc err_ = Errc::ok;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Errc e) : err_(e) {}  // NOLINT(google-explicit-constructor)
  bool ok() const noexcept { return err_ == Errc::ok; }
  explicit operator bool() const noexcept { return ok(); }
  Errc error() const noexcept { return err_; }
  void get(const char* what = "") const {
    if (!ok()) throw Error(err_, what);
  }

 private:
  Errc err_ = Errc::ok;
};

}  // namespace kbus
