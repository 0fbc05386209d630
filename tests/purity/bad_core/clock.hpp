// A deliberately impure "core" header: a clock (see bad_core/io.cpp).
#pragma once
#include <chrono>
