// bridge/subjects.cpp - see subjects.hpp.
#include "bridge/subjects.hpp"

#include <vector>

#include "core/names.hpp"

namespace kbus::bridge {

namespace {

bool alnum(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // lower case is not canonical
}

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    std::size_t dot = s.find('.', start);
    if (dot == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, dot - start));
    start = dot + 1;
  }
}

}  // namespace

std::string prefix_problem(std::string_view prefix) {
  if (prefix.empty()) return "the prefix is empty";
  auto tokens = split(prefix);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i].empty()) return "token " + std::to_string(i + 1) + " of the prefix is empty";
    for (char c : tokens[i]) {
      if (!alnum(c) && c != '-' && c != '_') {
        return std::string("the prefix may hold only letters, digits, '-', '_' and dots, not '") +
               c + "'";
      }
    }
  }
  if (tokens[0] == "_KBUS") return "the prefix may not start with _KBUS (the bridges' own subjects)";
  return {};
}

std::string escape_token(std::string_view component) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(component.size());
  for (char c : component) {
    if (alnum(c)) {
      out.push_back(c);
    } else {
      const auto b = static_cast<unsigned char>(c);
      out.push_back('_');
      out.push_back(kHex[b >> 4]);
      out.push_back(kHex[b & 15]);
    }
  }
  return out;
}

std::optional<std::string> unescape_token(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  for (std::size_t i = 0; i < token.size(); ++i) {
    char c = token[i];
    if (alnum(c)) {
      out.push_back(c);
      continue;
    }
    if (c != '_' || i + 2 >= token.size()) return std::nullopt;
    int hi = hex_value(token[i + 1]), lo = hex_value(token[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    char d = static_cast<char>(hi * 16 + lo);
    if (alnum(d)) return std::nullopt;  // escape never writes a letter or digit so
    out.push_back(d);
    i += 2;
  }
  return out;
}

std::optional<std::string> name_to_subject(std::string_view prefix, std::string_view name) {
  if (!core::is_valid_name(name)) return std::nullopt;
  auto parts = split(name);  // parts[0] == "$"
  std::string out(prefix);
  for (std::size_t i = 1; i < parts.size(); ++i) {
    out.push_back('.');
    const bool last = i + 1 == parts.size();
    if (last && parts[i] == "*") {
      out.push_back('>');
    } else if (last && parts[i] == "%") {
      out.push_back('*');
    } else {
      out += escape_token(parts[i]);
    }
  }
  return out;
}

std::optional<std::string> subject_to_name(std::string_view prefix, std::string_view subject,
                                           std::string* why) {
  auto fail = [&](std::string text) -> std::optional<std::string> {
    if (why) *why = std::move(text);
    return std::nullopt;
  };
  if (subject.size() <= prefix.size() + 1 || subject.substr(0, prefix.size()) != prefix ||
      subject[prefix.size()] != '.') {
    return fail("the subject does not start with the prefix " + std::string(prefix) + ".");
  }
  auto tokens = split(subject.substr(prefix.size() + 1));
  std::string name = "$";
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const bool last = i + 1 == tokens.size();
    name.push_back('.');
    if (tokens[i] == ">" || tokens[i] == "*") {
      if (!last) return fail("a wildcard token '" + std::string(tokens[i]) + "' is not last");
      name.push_back(tokens[i] == ">" ? '*' : '%');
      continue;
    }
    auto component = unescape_token(tokens[i]);
    if (!component) {
      return fail("token '" + std::string(tokens[i]) +
                  "' is not an escaped KBUS name component (letters and digits, other bytes "
                  "as _XX)");
    }
    name += *component;
  }
  std::string problem = core::name_problem(name, false);
  if (!problem.empty()) return fail("it maps to " + name + ", not a KBUS name: " + problem);
  return name;
}

std::optional<std::string> name_to_key(std::string_view name) {
  if (!core::is_valid_name(name)) return std::nullopt;
  auto parts = split(name);
  std::string out = "r";
  for (std::size_t i = 1; i < parts.size(); ++i) {
    out.push_back('.');
    out += escape_token(parts[i]);
  }
  return out;
}

std::optional<std::string> key_to_name(std::string_view key) {
  if (key.size() < 3 || key.substr(0, 2) != "r.") return std::nullopt;
  auto tokens = split(key.substr(2));
  std::string name = "$";
  for (auto t : tokens) {
    auto component = unescape_token(t);
    if (!component || component->empty()) return std::nullopt;
    name.push_back('.');
    name += *component;
  }
  if (!core::is_valid_name(name)) return std::nullopt;
  return name;
}

std::string bucket_for_prefix(std::string_view prefix) {
  std::string out;
  for (char c : prefix) out.push_back(c == '.' ? '_' : c);
  return out + "_fleet";
}

}  // namespace kbus::bridge
