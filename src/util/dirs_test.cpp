// The bus-directory safety rule (util/dirs.hpp; docs/reliability.md §9,
// docs/decisions.md D27), judged on stat values, and on real paths for
// what lstat must see (links, trailing slashes).
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "util/dirs.hpp"

namespace kbus::util {
namespace {

struct stat entry(mode_t mode, uid_t owner) {
  struct stat st {};
  st.st_mode = mode;
  st.st_uid = owner;
  return st;
}

const struct stat kTmp = entry(S_IFDIR | 01777, 0);       // like /tmp
const struct stat kRootOnly = entry(S_IFDIR | 0755, 0);   // like /run
const struct stat kUsersOwn = entry(S_IFDIR | 0700, 1000);  // like /run/user/1000

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(DirSafety, OwnDirectoryWithoutGroupOrOtherWriteIsSafe) {
  for (mode_t m : {0700, 0711, 0755, 0750})
    EXPECT_EQ(judge_bus_dir("/tmp/kbus-1000", entry(S_IFDIR | m, 1000), &kTmp, 1000), "") << m;
}

TEST(DirSafety, RootOwnedDirectoryIsSafeForEveryone) {
  EXPECT_EQ(judge_bus_dir("/run/kbus", entry(S_IFDIR | 0755, 0), &kRootOnly, 1000), "");
  EXPECT_EQ(judge_bus_dir("/run/kbus", entry(S_IFDIR | 0755, 0), &kRootOnly, 0), "");
}

// The attack: another user made /tmp/kbus-<uid> first.
TEST(DirSafety, AnotherUsersDirectoryIsRefusedWithOwnerExpectedAndFix) {
  const std::string p = judge_bus_dir("/tmp/kbus-1000", entry(S_IFDIR | 0755, 1001), &kTmp, 1000);
  EXPECT_TRUE(has(p, "unsafe bus directory /tmp/kbus-1000: ")) << p;
  EXPECT_TRUE(has(p, "owned by uid 1001")) << p;
  EXPECT_TRUE(has(p, "expected uid 1000")) << p;
  EXPECT_TRUE(has(p, "or root")) << p;
  EXPECT_TRUE(has(p, "remove it, or set KBUS_DIR")) << p;
  // Root expects only root.
  const std::string r = judge_bus_dir("/tmp/x", entry(S_IFDIR | 0700, 1001), &kTmp, 0);
  EXPECT_TRUE(has(r, "expected root (or a directory that root made")) << r;
}

// /run/kbus handed to the service user (systemd RuntimeDirectory=, kbusd
// --user): only root can have made it there.
TEST(DirSafety, DirectoryGivenByRootInARootOnlyParentIsSafe) {
  EXPECT_EQ(judge_bus_dir("/run/kbus", entry(S_IFDIR | 0755, 999), &kRootOnly, 1000), "");
  EXPECT_EQ(judge_bus_dir("/run/kbus", entry(S_IFDIR | 0755, 999), &kRootOnly, 0), "");
  // Not when the parent is the other user's, writable by others, or unknown.
  EXPECT_NE(judge_bus_dir("/x/kbus", entry(S_IFDIR | 0755, 999), &kUsersOwn, 1000), "");
  EXPECT_NE(judge_bus_dir("/x/kbus", entry(S_IFDIR | 0755, 999), &kTmp, 1000), "");
  const struct stat group_writable = entry(S_IFDIR | 0775, 0);
  EXPECT_NE(judge_bus_dir("/x/kbus", entry(S_IFDIR | 0755, 999), &group_writable, 1000), "");
  EXPECT_NE(judge_bus_dir("/x/kbus", entry(S_IFDIR | 0755, 999), nullptr, 1000), "");
}

TEST(DirSafety, GroupOrOtherWritableDirectoryIsRefusedEvenIfOwn) {
  const std::string o = judge_bus_dir("/d", entry(S_IFDIR | 0777, 1000), &kRootOnly, 1000);
  EXPECT_TRUE(has(o, "writable by others (mode 0777)")) << o;
  EXPECT_TRUE(has(o, "chmod go-w /d")) << o;
  const std::string g = judge_bus_dir("/d", entry(S_IFDIR | 0770, 1000), &kRootOnly, 1000);
  EXPECT_TRUE(has(g, "writable by its group (mode 0770)")) << g;
  // The sticky bit does not help: others may still add sockets.
  EXPECT_NE(judge_bus_dir("/d", entry(S_IFDIR | 01777, 0), &kRootOnly, 0), "");
  // The system directory has no exception either (D27): its group need
  // only reach the sockets, never write the directory.
  EXPECT_NE(judge_bus_dir("/run/kbus", entry(S_IFDIR | 0775, 999), &kRootOnly, 1000), "");
}

TEST(DirSafety, SymbolicLinksAndFilesAreNotDirectories) {
  const std::string l = judge_bus_dir("/tmp/kbus-1000", entry(S_IFLNK | 0777, 1001), &kTmp, 1000);
  EXPECT_TRUE(has(l, "it is a symbolic link (owner uid 1001)")) << l;
  EXPECT_TRUE(has(l, "expected a directory owned by uid 1000")) << l;
  // Even one of our own.
  EXPECT_NE(judge_bus_dir("/tmp/kbus-1000", entry(S_IFLNK | 0777, 1000), &kTmp, 1000), "");
  const std::string f = judge_bus_dir("/d", entry(S_IFREG | 0644, 1000), &kTmp, 1000);
  EXPECT_TRUE(has(f, "it is a regular file")) << f;
}

TEST(DirSafety, PathHelpers) {
  EXPECT_EQ(strip_slashes("/a/b//"), "/a/b");
  EXPECT_EQ(strip_slashes("/"), "/");
  EXPECT_EQ(parent_dir("/run/kbus"), "/run");
  EXPECT_EQ(parent_dir("/run/kbus/"), "/run");
  EXPECT_EQ(parent_dir("/kbus"), "/");
  EXPECT_EQ(parent_dir("kbus"), ".");
  EXPECT_EQ(parent_dir("a//kbus"), "a");
}

// bus_dir_problem on real paths: lstat, so a link is seen as a link - with
// or without a trailing slash, which would make lstat follow it.
TEST(DirSafety, RealPathsAreJudgedWithoutFollowingLinks) {
  char tmpl[] = "/tmp/kbus-dirsafety-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string base = tmpl;
  const std::string mine = base + "/mine";
  ASSERT_EQ(::mkdir(mine.c_str(), 0700), 0);
  ASSERT_EQ(::symlink(mine.c_str(), (base + "/link").c_str()), 0);
  EXPECT_EQ(bus_dir_problem(mine), "");
  EXPECT_EQ(bus_dir_problem(mine + "/"), "");
  EXPECT_EQ(bus_dir_problem(base + "/missing"), "");  // the open says ENOENT
  for (const std::string& l : {base + "/link", base + "/link/", base + "/link//"})
    EXPECT_TRUE(has(bus_dir_problem(l), "it is a symbolic link")) << l;
  ASSERT_EQ(::chmod(mine.c_str(), 0777), 0);
  EXPECT_TRUE(has(bus_dir_problem(mine), "writable by others (mode 0777)"));
  std::filesystem::remove_all(base);
}

}  // namespace
}  // namespace kbus::util
