// core/message_body.hpp - the name and data bytes of one message, stored
// once and shared by every queue that holds the message (DESIGN.md §5).
//
// A MessageBody is one heap block: the shared_ptr control block followed by
// the name and the data (std::make_shared_for_overwrite). Copying a body
// shares it; the bytes are immutable while shared. A MessageBodyBuilder
// owns a body that is still being filled in, so that WriteParser can copy a
// written message's bytes straight into the body that the bus then queues.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>

namespace kbus::core {

class MessageBody {
 public:
  MessageBody() = default;  // no body
  // A body holding copies of `name` and `data`.
  MessageBody(std::string_view name, std::string_view data);

  std::string_view name() const noexcept { return {bytes_.get(), name_len_}; }
  std::string_view data() const noexcept { return {bytes_.get() + name_len_, data_len_}; }
  explicit operator bool() const noexcept { return bytes_ != nullptr; }

 private:
  friend class MessageBodyBuilder;
  MessageBody(std::shared_ptr<const char[]> bytes, std::uint32_t name_len,
              std::uint32_t data_len) noexcept
      : bytes_(std::move(bytes)), name_len_(name_len), data_len_(data_len) {}

  std::shared_ptr<const char[]> bytes_;  // name_len_ name bytes, then data_len_ data bytes
  std::uint32_t name_len_ = 0;
  std::uint32_t data_len_ = 0;
};

class MessageBodyBuilder {
 public:
  MessageBodyBuilder() = default;  // nothing being built
  // Room for a name and data of these sizes; the bytes are uninitialised.
  MessageBodyBuilder(std::uint32_t name_len, std::uint32_t data_len)
      : bytes_(std::make_shared_for_overwrite<char[]>(std::size_t{name_len} + data_len)),
        name_len_(name_len),
        data_len_(data_len) {}

  char* name() noexcept { return bytes_.get(); }
  char* data() noexcept { return bytes_.get() + name_len_; }
  const char* name() const noexcept { return bytes_.get(); }
  const char* data() const noexcept { return bytes_.get() + name_len_; }
  std::uint32_t name_len() const noexcept { return name_len_; }
  std::uint32_t data_len() const noexcept { return data_len_; }
  explicit operator bool() const noexcept { return bytes_ != nullptr; }

  // The finished body; this builder is left empty.
  MessageBody finish() && noexcept {
    MessageBody b(std::move(bytes_), name_len_, data_len_);
    name_len_ = data_len_ = 0;
    return b;
  }

 private:
  std::shared_ptr<char[]> bytes_;
  std::uint32_t name_len_ = 0;
  std::uint32_t data_len_ = 0;
};

inline MessageBody::MessageBody(std::string_view name, std::string_view data) {
  MessageBodyBuilder b(static_cast<std::uint32_t>(name.size()),
                       static_cast<std::uint32_t>(data.size()));
  if (!name.empty()) std::memcpy(b.name(), name.data(), name.size());
  if (!data.empty()) std::memcpy(b.data(), data.data(), data.size());
  *this = std::move(b).finish();
}

}  // namespace kbus::core
