// cli/json_output.hpp - one message as one line of JSON (`kbus listen --json`).
#pragma once

#include <string>
#include <string_view>

#include "kbus/message.hpp"

namespace kbus::cli {

// {"id":{"network_id":0,"serial_num":5},"in_reply_to":{...},"to":0,"from":1,
//  "orig_from":{"network_id":0,"local_id":0},"final_to":{...},"flags":8,
//  "name":"$.Fred","data":"text"}
// "data" is a JSON string when the data is valid UTF-8 (empty if none);
// otherwise "data" is null and "data_base64" holds the bytes in base64.
std::string message_to_json(const Message& m);

bool is_valid_utf8(std::string_view s) noexcept;
std::string base64_encode(std::string_view bytes);
// JSON string literal (with quotes) for valid UTF-8 text.
std::string json_string(std::string_view utf8);

}  // namespace kbus::cli
