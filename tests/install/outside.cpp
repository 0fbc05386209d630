// outside.cpp - a C++ program outside the kbus tree, built against the
// installed kbus (pkg-config or find_package): the C++ client, its
// exceptions across the library boundary, and the C API from C++, on the
// kbusd in $KBUS_DIR. Prints "outside C++: ok" and exits 0 on success.
#include <fcntl.h>
#include <libkbus/kbus.h>

#include <cstdio>
#include <iostream>

#include "kbus/errors.hpp"
#include "kbus/ksock.hpp"
#include "kbus/message.hpp"

int main() {
  try {
    kbus::Ksock replier = kbus::Ksock::open(0);
    kbus::Ksock requester = kbus::Ksock::open(0);
    replier.bind("$.Outside.Cxx", true);
    kbus::MessageId id = requester.send_msg(kbus::make_request("$.Outside.Cxx", "ping"));
    auto req = replier.read_next_msg();
    if (!req || !req->wants_us_to_reply()) throw std::runtime_error("no request");
    replier.send_msg(kbus::make_reply(*req, "pong").get());
    auto rep = requester.read_next_msg();
    if (!rep || rep->hdr.in_reply_to != id || rep->data != "pong")
      throw std::runtime_error("no reply");
    std::cout << rep->to_string() << "\n";

    // A kbus::Error thrown inside libkbus is caught here, with its errno.
    try {
      kbus::Ksock::open(200);
      throw std::runtime_error("bus 200 opened");
    } catch (const kbus::Error& e) {
      if (e.errc() != kbus::Errc::enoent) throw std::runtime_error("not ENOENT");
      std::cout << "caught " << kbus::errno_name(e.error_number()) << "\n";
    }

    // The C API, from C++.
    kbus_ksock_t k = kbus_ksock_open(0, O_RDONLY);
    uint32_t kid = 0;
    if (k < 0 || kbus_ksock_id(k, &kid) != 0 || kid == 0 || kbus_ksock_close(k) != 0) {
      throw std::runtime_error("C API from C++");
    }
  } catch (const std::exception& e) {
    std::cout << "outside C++: " << e.what() << "\n";
    return 1;
  }
  std::cout << "outside C++: ok\n";
  return 0;
}
