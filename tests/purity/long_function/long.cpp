// tests/purity/long_function/long.cpp - input of the function_length_catches test
// (tests/purity/CMakeLists.txt): one function over 120 lines, which
// scripts/long_functions.py must report, and short ones whose comments,
// strings and characters hold braces, which it must not. Never compiled.
#include <string>

#define OPEN_BRACE {

namespace fixture {

struct Holder {
  int inline_member() const { return 1; }  // }}} in a comment
};

std::string short_with_braces() {
  const char* a = "}}}}";
  char b = '}';
  /* {{{{ */
  return std::string(a) + b + R"(}}})";
}

int too_long(int x) {
  int y = 0;
  y += x * 0;
  y += x * 1;
  y += x * 2;
  y += x * 3;
  y += x * 4;
  y += x * 5;
  y += x * 6;
  y += x * 7;
  y += x * 8;
  y += x * 9;
  y += x * 10;
  y += x * 11;
  y += x * 12;
  y += x * 13;
  y += x * 14;
  y += x * 15;
  y += x * 16;
  y += x * 17;
  y += x * 18;
  y += x * 19;
  y += x * 20;
  y += x * 21;
  y += x * 22;
  y += x * 23;
  y += x * 24;
  y += x * 25;
  y += x * 26;
  y += x * 27;
  y += x * 28;
  y += x * 29;
  y += x * 30;
  y += x * 31;
  y += x * 32;
  y += x * 33;
  y += x * 34;
  y += x * 35;
  y += x * 36;
  y += x * 37;
  y += x * 38;
  y += x * 39;
  y += x * 40;
  y += x * 41;
  y += x * 42;
  y += x * 43;
  y += x * 44;
  y += x * 45;
  y += x * 46;
  y += x * 47;
  y += x * 48;
  y += x * 49;
  y += x * 50;
  y += x * 51;
  y += x * 52;
  y += x * 53;
  y += x * 54;
  y += x * 55;
  y += x * 56;
  y += x * 57;
  y += x * 58;
  y += x * 59;
  y += x * 60;
  y += x * 61;
  y += x * 62;
  y += x * 63;
  y += x * 64;
  y += x * 65;
  y += x * 66;
  y += x * 67;
  y += x * 68;
  y += x * 69;
  y += x * 70;
  y += x * 71;
  y += x * 72;
  y += x * 73;
  y += x * 74;
  y += x * 75;
  y += x * 76;
  y += x * 77;
  y += x * 78;
  y += x * 79;
  y += x * 80;
  y += x * 81;
  y += x * 82;
  y += x * 83;
  y += x * 84;
  y += x * 85;
  y += x * 86;
  y += x * 87;
  y += x * 88;
  y += x * 89;
  y += x * 90;
  y += x * 91;
  y += x * 92;
  y += x * 93;
  y += x * 94;
  y += x * 95;
  y += x * 96;
  y += x * 97;
  y += x * 98;
  y += x * 99;
  y += x * 100;
  y += x * 101;
  y += x * 102;
  y += x * 103;
  y += x * 104;
  y += x * 105;
  y += x * 106;
  y += x * 107;
  y += x * 108;
  y += x * 109;
  y += x * 110;
  y += x * 111;
  y += x * 112;
  y += x * 113;
  y += x * 114;
  y += x * 115;
  y += x * 116;
  y += x * 117;
  y += x * 118;
  y += x * 119;
  return y;
}

}  // namespace fixture
