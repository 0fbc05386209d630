// capi/ksock_table.cpp - see ksock_table.hpp.
#include "capi/ksock_table.hpp"

#include <utility>

namespace kbus::capi {

KsockTable& KsockTable::instance() {
  static KsockTable* table = new KsockTable();  // deliberately never deleted
  return *table;
}

int KsockTable::add(Ksock k) {
  auto e = std::make_shared<KsockEntry>();
  int fd = k.fileno();
  e->ksock = std::move(k);
  std::lock_guard<std::mutex> lk(mu_);
  auto& slot = entries_[fd];
  if (slot) {
    // The fd is open (it is the new Ksock's), so an entry already holding
    // its number is one whose fd the program closed with close() instead of
    // kbus_ksock_close(). Destroying that Ksock would close the number again
    // - now the new Ksock's poll fd - so it is deliberately leaked.
    new std::shared_ptr<KsockEntry>(std::move(slot));  // NOLINT: intentional leak
  }
  slot = std::move(e);
  return fd;
}

std::shared_ptr<KsockEntry> KsockTable::find(int ksock) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = entries_.find(ksock);
  return it == entries_.end() ? nullptr : it->second;
}

std::shared_ptr<KsockEntry> KsockTable::remove(int ksock) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = entries_.find(ksock);
  if (it == entries_.end()) return nullptr;
  auto e = std::move(it->second);
  entries_.erase(it);
  return e;
}

}  // namespace kbus::capi
