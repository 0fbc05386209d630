// install/install_test.cpp - `cmake --install` and what other projects do
// with the result (issue 4): the installed files, the pkg-config file and
// the CMake package used by outside C and C++ programs, the Python package,
// the man pages and the systemd unit; the programs run against the installed
// kbusd (TestDaemon runs KBUSD_PATH, which is the installed one).
//
// One process, tests in order: SetUpTestSuite installs into a fresh prefix
// under the build directory; every test uses that prefix. Every command is
// bounded by a timeout; nothing sleeps.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "kbus/ksock.hpp"
#include "kbus/message.hpp"
#include "support/child_process.hpp"
#include "support/test_daemon.hpp"

namespace kbus::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kPrefix = KBUS_TEST_PREFIX;
const std::string kWork = KBUS_TEST_WORK;
const std::string kSource = KBUS_SOURCE_DIR;

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') {
      q += "'\\''";
    } else {
      q += c;
    }
  }
  return q + "'";
}

struct Shell {
  int code = -1;
  std::string out;  // stdout and stderr together
};
Shell sh(const std::string& cmd, const Env& env = {}, std::chrono::milliseconds timeout = 300s) {
  auto r = run_process({"/bin/sh", "-c", cmd + " 2>&1"}, env, {}, timeout);
  return {r.exit_code, r.out + r.err};
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string in_prefix(const std::string& rel) { return kPrefix + "/" + rel; }
std::string libdir() { return in_prefix(KBUS_LIBDIR); }

class InstallTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::error_code ec;
    fs::remove_all(kPrefix, ec);
    fs::remove_all(kWork, ec);
    fs::create_directories(kWork);
    auto r =
        run_process({KBUS_CMAKE, "--install", KBUS_BUILD_DIR, "--prefix", kPrefix}, {}, {}, 300s);
    installed_ = r.exit_code == 0;
    install_log_ = r.out + r.err;
  }
  void SetUp() override { ASSERT_TRUE(installed_) << "cmake --install failed:\n" << install_log_; }

  // Environment for programs built against the prefix.
  Env run_env(const TestDaemon& d) const {
    return {{"KBUS_DIR", d.dir()}, {"LD_LIBRARY_PATH", libdir()}};
  }
  Env pkg_env() const { return {{"PKG_CONFIG_PATH", in_prefix(KBUS_PKGCONFIG_DIR)}}; }

  static inline bool installed_ = false;
  static inline std::string install_log_;
};

TEST_F(InstallTest, InstallsEveryPart) {
  const std::string lib = KBUS_LIBDIR;
  const std::vector<std::string> files = {
      std::string(KBUS_BINDIR) + "/kbusd",
      std::string(KBUS_BINDIR) + "/kbus",
      std::string(KBUS_INCLUDEDIR) + "/libkbus/kbus.h",
      std::string(KBUS_INCLUDEDIR) + "/libkbus/kbus_defns.h",
      std::string(KBUS_INCLUDEDIR) + "/libkbus/linux/kbus_defns.h",
      // The documents the headers cite.
      "share/doc/kbus/KBUS-SPEC.md", "share/doc/kbus/protocol.md", "share/doc/kbus/decisions.md",
      std::string(KBUS_INCLUDEDIR) + "/kbus/ksock.hpp",
      std::string(KBUS_INCLUDEDIR) + "/kbus/message.hpp",
      std::string(KBUS_INCLUDEDIR) + "/kbus/errors.hpp",
      std::string(KBUS_INCLUDEDIR) + "/kbus/export.hpp",
      std::string(KBUS_INCLUDEDIR) + "/cppkbus/cppkbus.h",
      lib + "/libkbus.so",
      lib + "/libkbus.so.0",
      lib + "/libkbus.so." KBUS_VERSION,
      lib + "/libkbus.a",
      std::string(KBUS_PKGCONFIG_DIR) + "/kbus.pc",
      std::string(KBUS_PKGCONFIG_DIR) + "/kbus++.pc",
      "share/bash-completion/completions/kbus",
      "share/bash-completion/completions/kbusd",
      "share/zsh/site-functions/_kbus",
      "lib/sysusers.d/kbus.conf",
      std::string(KBUS_CMAKE_DIR) + "/kbusConfig.cmake",
      std::string(KBUS_CMAKE_DIR) + "/kbusConfigVersion.cmake",
      std::string(KBUS_CMAKE_DIR) + "/kbusTargets.cmake",
      std::string(KBUS_MANDIR) + "/man8/kbusd.8",
      std::string(KBUS_MANDIR) + "/man1/kbus.1",
      std::string(KBUS_SYSTEMD_UNIT_DIR) + "/kbusd.service",
      std::string(KBUS_PYTHON_DIR) + "/kbus/__init__.py",
      std::string(KBUS_PYTHON_DIR) + "/kbus/ksock.py",
      std::string(KBUS_PYTHON_DIR) + "/kbus/messages.py",
  };
  for (const auto& f : files) EXPECT_TRUE(fs::exists(in_prefix(f))) << f;

  // The usual library links: libkbus.so -> libkbus.so.0 -> libkbus.so.0.x.y.
  EXPECT_EQ(fs::read_symlink(libdir() + "/libkbus.so"), "libkbus.so.0");
  EXPECT_EQ(fs::read_symlink(libdir() + "/libkbus.so.0"), "libkbus.so." KBUS_VERSION);
  auto soname = sh("readelf -d " + quote(libdir() + "/libkbus.so.0"));
  EXPECT_NE(soname.out.find("Library soname: [libkbus.so.0]"), std::string::npos) << soname.out;

  auto v = sh(quote(in_prefix(std::string(KBUS_BINDIR) + "/kbusd")) + " --version");
  EXPECT_EQ(v.code, 0);
  EXPECT_EQ(v.out, "kbusd " KBUS_VERSION "\n");
  auto cli = sh(quote(in_prefix(std::string(KBUS_BINDIR) + "/kbus")) + " --version");
  EXPECT_EQ(cli.code, 0) << cli.out;
}

TEST_F(InstallTest, SystemdUnitStartsKbusdWithBusesInRunKbus) {
  const std::string unit = in_prefix(std::string(KBUS_SYSTEMD_UNIT_DIR) + "/kbusd.service");
  const std::string text = read_file(unit);
  const std::string kbusd = in_prefix(std::string(KBUS_BINDIR) + "/kbusd");
  // The system bus: /run/kbus, group kbus, mode 0660 (not everyone), and
  // KBUSD_OPTS from /etc/default/kbusd last, so that it can override.
  EXPECT_NE(text.find("\nExecStart=" + kbusd +
                      " --devices ${KBUS_DEVICES} --dir /run/kbus --group kbus --mode 0660 "
                      "$KBUSD_OPTS\n"),
            std::string::npos)
      << text;
  for (const char* line : {"Type=notify", "User=kbus", "RuntimeDirectory=kbus",
                           "Environment=KBUS_DEVICES=1 KBUSD_OPTS=",
                           "EnvironmentFile=-/etc/default/kbusd", "WantedBy=multi-user.target"})
    EXPECT_NE(text.find(std::string("\n") + line + "\n"), std::string::npos) << line << "\n"
                                                                             << text;
  // The command line the unit runs works (with a private directory in place
  // of /run/kbus and the test's own group in place of kbus); TestDaemon
  // waits for its readiness, as systemd does with Type=notify.
  TestDaemon d(2, {"--group", std::to_string(::getgid()), "--mode", "0660"});
  Ksock k = d.open(1);
  EXPECT_EQ(k.bus(), 1u);
  if (std::string(KBUS_SYSTEMD_ANALYZE).empty()) return;
  // systemd's own check, where systemd-analyze exists (it also checks that
  // the man page of Documentation= is found).
  auto r = sh(std::string(KBUS_SYSTEMD_ANALYZE) + " verify " + quote(unit),
              {{"MANPATH", in_prefix(KBUS_MANDIR)}}, 60s);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.find("kbusd.service:"), std::string::npos) << r.out;
  // Hardening: systemd rates the unit's exposure at most 2.0 ("OK").
  auto sec = sh(
      std::string(KBUS_SYSTEMD_ANALYZE) + " security --offline=true --threshold=20 " + quote(unit),
      {}, 60s);
  EXPECT_EQ(sec.code, 0) << sec.out;
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(sec.out, m, std::regex("Overall exposure level for [^:]*: ([0-9.]+)")))
      << sec.out;
  EXPECT_LE(std::stod(m[1]), 2.0) << sec.out;
}

// The options a --help text lists ("-n,--devices UINT ..." -> "--devices").
std::set<std::string> long_options(const std::string& help) {
  std::set<std::string> opts;
  std::regex re("(^|[ ,])(--[a-z][a-z0-9-]+)");
  std::istringstream in(help);
  std::string line;
  while (std::getline(in, line)) {
    // Only option lines (they start with spaces and a dash), not prose.
    if (!std::regex_search(line, std::regex("^  +-"))) continue;
    for (std::sregex_iterator it(line.begin(), line.end(), re), end; it != end; ++it) {
      opts.insert((*it)[2]);
    }
  }
  return opts;
}

// A man page as plain text: roff's \- is a dash.
std::string man_text(const std::string& path) {
  std::string t = read_file(path);
  std::string out;
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '\\' && i + 1 < t.size() && t[i + 1] == '-') continue;
    out += t[i];
  }
  return out;
}

TEST_F(InstallTest, ManPagesDocumentEveryOption) {
  const std::string bin = in_prefix(KBUS_BINDIR);
  const std::string kbusd_man = man_text(in_prefix(std::string(KBUS_MANDIR) + "/man8/kbusd.8"));
  const std::string kbus_man = man_text(in_prefix(std::string(KBUS_MANDIR) + "/man1/kbus.1"));

  auto help = sh(quote(bin + "/kbusd") + " --help");
  ASSERT_EQ(help.code, 0);
  auto opts = long_options(help.out);
  EXPECT_GE(opts.size(), 5u) << help.out;
  for (const auto& o : opts)
    EXPECT_NE(kbusd_man.find(o), std::string::npos) << "kbusd.8 lacks " << o;

  auto top = sh(quote(bin + "/kbus") + " --help");
  ASSERT_EQ(top.code, 0);
  const auto subs_at = top.out.find("Subcommands:");
  ASSERT_NE(subs_at, std::string::npos) << top.out;
  std::istringstream subs(top.out.substr(subs_at));
  std::string line;
  std::getline(subs, line);
  int count = 0;
  while (std::getline(subs, line)) {
    std::smatch m;
    if (!std::regex_search(line, m, std::regex("^  ([a-z][a-z-]*) "))) continue;
    const std::string sub = m[1];
    ++count;
    EXPECT_NE(kbus_man.find(".SS " + sub + "\n"), std::string::npos) << "kbus.1 lacks " << sub;
    if (sub == "limpet") continue;  // its own help text, referred to by the page
    auto h = sh(quote(bin + "/kbus") + " " + sub + " --help");
    EXPECT_EQ(h.code, 0) << sub;
    for (const auto& o : long_options(h.out)) {
      EXPECT_NE(kbus_man.find(o), std::string::npos) << "kbus.1 lacks " << sub << " " << o;
    }
  }
  EXPECT_GE(count, 8) << top.out;

  if (std::string(KBUS_GROFF).empty()) return;
  for (const char* page : {"/man8/kbusd.8", "/man1/kbus.1"}) {
    auto g = sh(std::string(KBUS_GROFF) + " -man -ww -z " +
                quote(in_prefix(std::string(KBUS_MANDIR) + page)));
    EXPECT_EQ(g.code, 0) << page << g.out;
    EXPECT_EQ(g.out, "") << page;
  }
}

TEST_F(InstallTest, PythonPackageWorksFromThePrefix) {
  if (std::string(KBUS_PYTHON3).empty()) GTEST_SKIP() << "no python3";
  TestDaemon d(1);
  const std::string code =
      "import kbus\n"
      "k = kbus.Ksock(0, 'rw')\n"
      "k.bind('$.Py')\n"
      "k.send_msg(kbus.Announcement('$.Py', b'hi'))\n"
      "m = k.read_next_msg()\n"
      "assert m.data == b'hi', m\n"
      "print(kbus.__file__)\n";
  auto r =
      run_process({KBUS_PYTHON3, "-c", code},
                  {{"KBUS_DIR", d.dir()}, {"PYTHONPATH", in_prefix(KBUS_PYTHON_DIR)}}, {}, 60s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, in_prefix(std::string(KBUS_PYTHON_DIR) + "/kbus/__init__.py") + "\n");
}

TEST_F(InstallTest, PkgConfigBuildsOutsideCAndCxxPrograms) {
  if (std::string(KBUS_PKG_CONFIG).empty()) GTEST_SKIP() << "no pkg-config";
  const std::string pc = std::string(KBUS_PKG_CONFIG) + " ";
  auto ver = sh(pc + "--modversion kbus", pkg_env());
  EXPECT_EQ(ver.out, KBUS_VERSION "\n");

  const std::string flags = "$(" + pc + "--cflags --libs kbus)";
  const std::string src = kSource + "/tests";
  struct Build {
    std::string out;
    std::string cmd;
  };
  const std::vector<Build> builds = {
      // Exactly the command of issue 4: `cc prog.c $(pkg-config --cflags --libs kbus)`.
      {"outside_c", std::string(KBUS_CC) + " " + quote(src + "/install/outside.c") + " " + flags},
      {"kmsg", std::string(KBUS_CC) + " " + quote(src + "/capi/kmsg.c") + " " + flags},
      {"kspeed", std::string(KBUS_CC) + " " + quote(src + "/capi/kspeed.c") + " " + flags},
      // Programs written as the original utilities were, relying on
      // <libkbus/kbus.h> for the includes the original header made; the
      // same C source through the C++ compiler; <linux/kbus_defns.h>.
      {"original_includes",
       std::string(KBUS_CC) + " " + quote(src + "/capi/original_includes.c") + " " + flags},
      {"original_includes_cxx",
       std::string(KBUS_CXX) + " -x c++ " + quote(src + "/capi/original_includes.c") + " -x none " +
           flags},
      {"original_defns",
       std::string(KBUS_CC) + " " + quote(src + "/capi/original_defns.c") + " " + flags},
      // <libkbus/limpet.h> is installed and its functions are in libkbus.
      {"runlimpet", std::string(KBUS_CC) + " " + quote(src + "/capi/runlimpet.c") + " " + flags},
      {"outside_cxx",
       std::string(KBUS_CXX) + " -std=c++20 " + quote(src + "/install/outside.cpp") + " " + flags},
      // C++ without a -std flag: kbus++.pc brings -std=c++20.
      {"outside_cxx_pp", std::string(KBUS_CXX) + " " + quote(src + "/install/outside.cpp") + " $(" +
                             pc + "--cflags --libs kbus++)"},
      // The static library is self-contained, with the C++ runtime.
      {"outside_c_static", std::string(KBUS_CC) + " " + quote(src + "/install/outside.c") + " $(" +
                               pc + "--cflags kbus) $(" + pc +
                               "--variable=libdir kbus)/libkbus.a -lstdc++ -lm"},
  };
  for (const auto& b : builds) {
    auto r = sh(b.cmd + " -o " + quote(kWork + "/" + b.out), pkg_env());
    ASSERT_EQ(r.code, 0) << b.cmd << "\n" << r.out;
  }
  auto ldd = sh("ldd " + quote(kWork + "/outside_c"), {{"LD_LIBRARY_PATH", libdir()}});
  EXPECT_NE(ldd.out.find(libdir() + "/libkbus.so.0"), std::string::npos) << ldd.out;

  TestDaemon d(1);
  for (const char* prog : {"outside_c", "outside_c_static"}) {
    auto r = run_process({kWork + "/" + prog}, run_env(d), {}, 60s);
    EXPECT_EQ(r.exit_code, 0) << prog << r.out << r.err;
    EXPECT_NE(r.out.find("outside C: ok"), std::string::npos) << prog << r.out;
  }
  for (const char* prog : {"original_includes", "original_includes_cxx"}) {
    auto r = run_process({kWork + "/" + prog}, run_env(d), {}, 60s);
    EXPECT_EQ(r.exit_code, 0) << prog << r.out << r.err;
    EXPECT_NE(r.out.find("original includes: ok"), std::string::npos) << prog << r.out;
  }
  auto defns = run_process({kWork + "/original_defns"}, run_env(d), {}, 60s);
  EXPECT_EQ(defns.out, "linux/kbus_defns.h: ok\n");
  for (const char* prog : {"outside_cxx", "outside_cxx_pp"}) {
    auto cxx = run_process({kWork + "/" + prog}, run_env(d), {}, 60s);
    EXPECT_EQ(cxx.exit_code, 0) << prog << cxx.out << cxx.err;
    EXPECT_NE(cxx.out.find("caught ENOENT\noutside C++: ok"), std::string::npos) << prog << cxx.out;
  }
  auto ppflags = sh(pc + "--cflags kbus++", pkg_env());
  EXPECT_EQ(ppflags.code, 0) << ppflags.out;
  EXPECT_NE(ppflags.out.find("-std=c++20"), std::string::npos) << ppflags.out;
  EXPECT_EQ(sh(pc + "--modversion kbus++", pkg_env()).out, KBUS_VERSION "\n");

  // kmsg and kspeed, built outside from unchanged sources, work.
  Ksock listener = d.open(0);
  listener.bind("$.Outside.Kmsg");
  auto k =
      run_process({kWork + "/kmsg", "send", "$.Outside.Kmsg", "s", "hello"}, run_env(d), {}, 60s);
  EXPECT_EQ(k.exit_code, 0) << k.out;
  auto m = listener.read_next_msg();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->data, "hello");
  auto ks = run_process({kWork + "/kspeed"}, run_env(d), {}, 60s);
  EXPECT_EQ(ks.exit_code, 1);
  EXPECT_NE(ks.out.find("Usage: kspeed"), std::string::npos);
  auto rl = run_process({kWork + "/runlimpet"}, run_env(d), {}, 60s);
  EXPECT_EQ(rl.exit_code, 0) << rl.err;
  EXPECT_NE(rl.out.find("Usage: runlimpet"), std::string::npos) << rl.out;
}

// cppkbus (KBUS-SPEC.md §12.3): a program written for the original C++
// binding builds against the installed <cppkbus/cppkbus.h> and libkbus with
// plain `c++` (no -std flag, as the original's users built), and also as
// strict C++98 without exceptions; both hold their conversation with the
// installed kbusd.
TEST_F(InstallTest, CppkbusProgramBuildsWithPlainCxx) {
  const std::string flags =
      "-I" + quote(in_prefix(KBUS_INCLUDEDIR)) + " -L" + quote(libdir()) + " -lkbus";
  const std::string program = quote(kSource + "/tests/cppkbus/cppkbus_program.cpp");
  const std::vector<std::pair<std::string, std::string>> builds = {
      {"cppkbus_plain", std::string(KBUS_CXX) + " " + program + " " + flags},
      {"cppkbus_cxx98", std::string(KBUS_CXX) +
                            " -std=c++98 -fno-exceptions -Wall -Wextra -Werror " + program + " " +
                            flags},
  };
  for (const auto& [out, cmd] : builds) {
    auto r = sh(cmd + " -o " + quote(kWork + "/" + out));
    ASSERT_EQ(r.code, 0) << cmd << "\n" << r.out;
    // The program expects Ksock 1 of a fresh bus to be another client
    // listening to the news (tests/cppkbus/cppkbus_program.cpp).
    TestDaemon d(1);
    Ksock outsider = d.open(0);
    outsider.bind("$.Talk.News");
    auto run = run_process({kWork + "/" + out}, run_env(d), {}, 60s);
    EXPECT_EQ(run.exit_code, 0) << out << run.out << run.err;
    EXPECT_NE(run.out.find(" checks, 0 failed\n"), std::string::npos) << out << run.out;
    auto m = outsider.read_next_msg();
    ASSERT_TRUE(m.has_value()) << out;
    EXPECT_EQ(m->data, "hello");
  }
}

TEST_F(InstallTest, FindPackageBuildsOutsideCAndCxxPrograms) {
  TestDaemon d(1);
  for (const std::string lang : {"c", "cxx"}) {
    const std::string build = kWork + "/cmake-build-" + lang;
    auto conf =
        sh(std::string(KBUS_CMAKE) + " -S " + quote(kSource + "/tests/install/outside_" + lang) +
               " -B " + quote(build) + " -DCMAKE_PREFIX_PATH=" + quote(kPrefix) +
               " -DCMAKE_BUILD_TYPE=Release" + " -DCMAKE_C_COMPILER=" + quote(KBUS_CC) +
               " -DCMAKE_CXX_COMPILER=" + quote(KBUS_CXX),
           {}, 300s);
    ASSERT_EQ(conf.code, 0) << conf.out;
    auto b = sh(std::string(KBUS_CMAKE) + " --build " + quote(build), {}, 300s);
    ASSERT_EQ(b.code, 0) << b.out;
    const std::string ok = lang == "c" ? "outside C: ok" : "outside C++: ok";
    for (const char* kind : {"_shared", "_static"}) {
      const std::string exe = build + "/outside_" + lang + kind;
      // No LD_LIBRARY_PATH: CMake's imported target gives the build an RPATH.
      auto r = run_process({exe}, {{"KBUS_DIR", d.dir()}}, {}, 60s);
      EXPECT_EQ(r.exit_code, 0) << exe << r.out << r.err;
      EXPECT_NE(r.out.find(ok), std::string::npos) << exe << r.out;
    }
  }
}

// `kbus run` (docs/device.md) preloads the installed libkbus-dev.so, found
// beside the installed kbus, so a program that opens /dev/kbus0 itself
// reaches the kbusd of KBUS_DIR.
TEST_F(InstallTest, KbusRunPreloadsTheInstalledDeviceLibrary) {
  ASSERT_TRUE(fs::exists(libdir() + "/libkbus-dev.so"));
  TestDaemon d(1);
  auto r = run_process(
      {KBUS_CLI_PATH, "run", "-d", d.dir(), "/usr/bin/python3", "-c",
       "import array, fcntl, os\n"
       "f = open('/dev/kbus0', 'rb', buffering=0)\n"
       "a = array.array('I', [0])\n"
       "fcntl.ioctl(f, 0x80086b04, a, True)  # KBUS_IOC_KSOCKID\n"
       "print('ksock', a[0], os.environ['LD_PRELOAD'])\n"},
      {}, {}, 60s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("ksock 1 " + in_prefix(KBUS_BINDIR) + "/../" + KBUS_LIBDIR +
                       "/libkbus-dev.so"),
            std::string::npos)
      << r.out;
}

}  // namespace
}  // namespace kbus::test
