// Package hoststall is the CPU work of the host-stall flaw: a data loader
// that busy-spins for a set time in a function a CPU sampler can name.
//
// The spin is C, not Go, because of how Nsight Systems names functions:
// it cuts a symbol at its first '.' (to fold C++ clones such as
// foo.constprop.0 into foo), and every Go symbol is package path dot name
// ("github.com/gpubench/gpubench/model.dataLoaderStall"), so nsys shows
// every Go frame of gpubench as "github", "main" or "runtime" (verified on
// an H200 with nsys 2025.3.2). A C function's symbol has no dot, so its
// samples carry the name dataLoaderStall. The device build keeps the
// symbol table (it strips DWARF only) for the sampler to read.
//
// It needs cgo and a C compiler, but no CUDA: it stays in the packages CI
// tests.
package hoststall

/*
#include <time.h>

// dataLoaderStall spins for ns nanoseconds of CLOCK_MONOTONIC, mixing a
// linear congruential generator so that the loop is work, and returns
// its state so that the compiler keeps it. noinline keeps it a frame of
// its own in every sample.
__attribute__((noinline)) unsigned long long dataLoaderStall(long long ns) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	const long long end = (long long)t.tv_sec * 1000000000LL + t.tv_nsec + ns;
	unsigned long long x = 1;
	for (;;) {
		for (int i = 0; i < 1000; i++) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((long long)t.tv_sec * 1000000000LL + t.tv_nsec >= end) return x;
	}
}
*/
import "C"

import "time"

// Symbol is the name the spin has in the binary's symbol table, and so in
// a CPU sampler's report.
const Symbol = "dataLoaderStall"

// sink keeps the spin's result.
var sink uint64

// Stall busy-spins the calling thread for d (at least d; a d of zero or
// less returns at once after one round of the loop).
func Stall(d time.Duration) {
	sink = uint64(C.dataLoaderStall(C.longlong(d.Nanoseconds())))
}
