// limpet/ksock_bus.cpp - see ksock_bus.hpp.
#include "limpet/ksock_bus.hpp"

namespace kbus::limpet {

Result<void> KsockBus::reopen() {
  // CLOSE first (synchronous in the client: KBUS has answered every Request
  // the old Ksock held when close() returns), then a fresh Ksock.
  ksock_.close();
  auto k = Ksock::try_open(bus_, Mode::read_write, dir_);
  if (!k) return k.error();
  ksock_ = std::move(*k);
  return {};
}

}  // namespace kbus::limpet
