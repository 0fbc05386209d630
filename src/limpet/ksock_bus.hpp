// limpet/ksock_bus.hpp - the BusPort of a real limpet: one kbus::Ksock on a
// bus of kbusd, through the public client API only (STYLE.md 12).
#pragma once

#include <string>
#include <vector>

#include "kbus/ksock.hpp"
#include "limpet/limpet.hpp"

namespace kbus::limpet {

class KsockBus final : public BusPort {
 public:
  KsockBus(int bus, std::string dir) : bus_(bus), dir_(std::move(dir)) {}

  Result<void> reopen() override;
  std::uint32_t ksock_id() const override { return ksock_.id(); }
  std::uint32_t bus_number() const override { return static_cast<std::uint32_t>(bus_); }
  Result<void> bind(std::string_view name, bool replier) override {
    return ksock_.try_bind(name, replier);
  }
  Result<void> unbind(std::string_view name, bool replier) override {
    return ksock_.try_unbind(name, replier);
  }
  Result<std::optional<std::uint32_t>> find_replier(std::string_view name) override {
    return ksock_.try_find_replier(name);
  }
  Result<MessageId> send(const Message& m) override { return ksock_.try_send_msg(m); }
  Result<bool> only_once(bool on) override {
    return ksock_.try_only_once(on ? Toggle::on : Toggle::off);
  }
  Result<bool> report_replier_binds() override { return ksock_.try_report_replier_binds(Toggle::on); }
  Result<std::uint32_t> set_max_messages(std::uint32_t n) override {
    return ksock_.try_set_max_messages(n);
  }
  Result<std::string> bindings_report() override { return ksock_.try_bindings_report(); }

  // The next message of the queue, or nullopt if it is empty.
  Result<std::optional<Message>> read_next() { return ksock_.try_read_next_msg(); }
  // Up to `max_count` queued messages (at most `max_bytes`, but one if any)
  // in one round trip (READBATCH); empty if the queue is empty.
  Result<std::vector<Message>> read_batch(std::uint32_t max_count, std::uint32_t max_bytes) {
    return ksock_.try_read_msgs(max_count, max_bytes);
  }
  // The poll fd: readable iff the queue is non-empty, writable iff no
  // ALL_OR_WAIT send is pending.
  int fileno() const { return ksock_.fileno(); }
  void close() { ksock_.close(); }

 private:
  int bus_;
  std::string dir_;
  Ksock ksock_;
};

}  // namespace kbus::limpet
