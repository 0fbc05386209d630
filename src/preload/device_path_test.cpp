// preload/device_path_test.cpp - which paths open a KBUS device.
#include "preload/device_path.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

namespace kbus::preload {
namespace {

// KBUS-SPEC.md §1.1: buses are /dev/kbus0 ... /dev/kbus255.
TEST(DevicePath, NamesOfTheDevices) {
  EXPECT_EQ(device_bus("/dev/kbus0"), 0);
  EXPECT_EQ(device_bus("/dev/kbus7"), 7);
  EXPECT_EQ(device_bus("/dev/kbus255"), 255);
  EXPECT_EQ(device_bus("//dev//kbus3"), 3);
  EXPECT_EQ(device_bus("/dev/./kbus3"), 3);
  EXPECT_EQ(device_bus("/tmp/../dev/kbus3"), 3);
  EXPECT_EQ(device_bus("/../dev/kbus3"), 3);
}

TEST(DevicePath, OtherPathsAreNotDevices) {
  EXPECT_EQ(device_bus("/dev/kbus"), std::nullopt);
  EXPECT_EQ(device_bus("/dev/kbus01"), std::nullopt);
  EXPECT_EQ(device_bus("/dev/kbus+1"), std::nullopt);
  EXPECT_EQ(device_bus("/dev/kbus1x"), std::nullopt);
  EXPECT_EQ(device_bus("/dev/kbus0/"), std::nullopt);
  EXPECT_EQ(device_bus("/dev/sub/kbus0"), std::nullopt);
  EXPECT_EQ(device_bus("/tmp/kbus0"), std::nullopt);
  EXPECT_EQ(device_bus("/dev/kbus0/.."), std::nullopt);
  EXPECT_EQ(device_bus("dev/kbus0"), std::nullopt);  // relative: device_bus_at
  EXPECT_EQ(device_bus(""), std::nullopt);
}

TEST(DevicePath, RelativePathsFollowTheDirectory) {
  int dev = ::open("/dev", O_RDONLY | O_DIRECTORY);
  ASSERT_GE(dev, 0);
  EXPECT_EQ(device_bus_at(dev, "kbus4"), 4);
  EXPECT_EQ(device_bus_at(dev, "./kbus4"), 4);
  EXPECT_EQ(device_bus_at(dev, "null"), std::nullopt);
  int tmp = ::open("/tmp", O_RDONLY | O_DIRECTORY);
  ASSERT_GE(tmp, 0);
  EXPECT_EQ(device_bus_at(tmp, "kbus4"), std::nullopt);
  EXPECT_EQ(device_bus_at(tmp, "../dev/kbus4"), 4);
  EXPECT_EQ(device_bus_at(AT_FDCWD, "/dev/kbus2"), 2);
  EXPECT_EQ(device_bus_at(AT_FDCWD, nullptr), std::nullopt);
  ::close(dev);
  ::close(tmp);
}

}  // namespace
}  // namespace kbus::preload
