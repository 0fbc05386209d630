// integration/fixture.hpp - one private kbusd per test (3 buses), plus the
// helpers the scenarios share.
#pragma once

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "kbus/errors.hpp"
#include "kbus/ksock.hpp"
#include "kbus/message.hpp"
#include "support/child_process.hpp"
#include "support/test_daemon.hpp"

namespace kbus::test {

class KbusTest : public ::testing::Test {
 protected:
  Ksock open(int bus = 0, Mode mode = Mode::read_write) { return daemon_.open(bus, mode); }

  // Reads the next message, which must be there now.
  static Message next(Ksock& k) {
    auto m = k.read_next_msg();
    if (!m) throw std::runtime_error("expected a message, the queue is empty");
    return *m;
  }

  // The daemon must survive every test and stop cleanly (a crash or a
  // sanitizer report shows up here, with its log).
  void TearDown() override { EXPECT_EQ(daemon_.stop(), 0) << "kbusd did not exit cleanly"; }

  TestDaemon daemon_{3};
};

// The error of a Result, for EXPECT_EQ(err(k.try_bind("x")), Errc::ebadmsg).
template <class T>
Errc err(const Result<T>& r) {
  return r.error();
}

inline std::string errc_name(Errc e) { return errno_name(to_errno(e)); }

}  // namespace kbus::test

// Prints Errc values by name in failure messages.
namespace kbus {
inline void PrintTo(Errc e, std::ostream* os) { *os << errno_name(to_errno(e)); }
inline void PrintTo(const MessageId& id, std::ostream* os) { *os << id.to_string(); }
inline void PrintTo(const Message& m, std::ostream* os) { *os << m.to_string(); }
}  // namespace kbus
