#!/usr/bin/env bash
# install-cuda.sh: make the CUDA headers, nvcc, ptxas and libcuda available for
# building gpubench on a machine without a GPU (CI, a laptop).
#
# It is idempotent. If a toolkit is already there (CUDA_HOME, /usr/local/cuda,
# or a cuda.h on the default include path) it does nothing but say where.
# Otherwise, on Debian or Ubuntu, it enables the contrib and non-free apt
# components (Debian ships CUDA there, not in main) and installs
# nvidia-cuda-toolkit without its recommends: CUDA 11.8 on Debian 12, about
# 3 GB and a few minutes.
#
# The last line it prints is the CUDA root to export as CUDA_HOME.
set -euo pipefail

say() { echo "install-cuda: $*" >&2; }

# cuda_version prints CUDA_VERSION from a cuda.h (12040 is CUDA 12.4).
cuda_version() {
	sed -n 's/^#define CUDA_VERSION \([0-9]*\).*/\1/p' "$1/include/cuda.h" | head -n 1
}

# gorgonia.org/cu v0.9.6 calls cuCtxCreate, which CUDA 13's headers renamed
# (cuCtxCreate_v4): a toolkit from 13 on cannot build gpubench. The binary
# built with older headers runs on CUDA 13 drivers all the same.
too_new=""

have_toolkit() {
	local root version
	for root in "${CUDA_HOME:-}" /usr/local/cuda /usr; do
		[ -n "$root" ] || continue
		if [ -f "$root/include/cuda.h" ] && [ -f "$root/include/cudaProfiler.h" ] &&
			[ -d "$root/include/nvtx3" ]; then
			version=$(cuda_version "$root")
			if [ -n "$version" ] && [ "$version" -ge 13000 ]; then
				too_new="$root (CUDA_VERSION $version)"
				continue
			fi
			echo "$root"
			return 0
		fi
	done
	return 1
}

if root=$(have_toolkit); then
	say "using the CUDA toolkit at $root"
	echo "$root"
	exit 0
fi

if [ -n "$too_new" ]; then
	say "the CUDA toolkit at $too_new is too new for gorgonia.org/cu v0.9.6 (it needs CUDA 12 or older headers)."
fi
if ! command -v apt-get >/dev/null; then
	say "no usable CUDA toolkit found and no apt-get to install one."
	say "install a CUDA toolkit from 11.8 to 12.x (cuda.h, cudaProfiler.h, nvtx3/, nvcc) and set CUDA_HOME."
	exit 1
fi

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

# Debian keeps nvidia-cuda-toolkit in non-free (Ubuntu in multiverse). Add the
# components to every apt source that lists only main.
enable_components() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		if grep -q '^Components:.*\bmain\b' "$f" && ! grep -q '^Components:.*non-free\b' "$f"; then
			say "adding contrib non-free to $f"
			$sudo sed -i -E '/^Components:/ s/$/ contrib non-free/' "$f"
		fi
	done
	if [ -f /etc/apt/sources.list ]; then
		if grep -qE '^deb .*debian.* main' /etc/apt/sources.list && ! grep -qE '^deb .*non-free' /etc/apt/sources.list; then
			say "adding contrib non-free to /etc/apt/sources.list"
			$sudo sed -i -E '/^deb .*debian/ s/ main( |$)/ main contrib non-free\1/' /etc/apt/sources.list
		fi
	fi
	if grep -qs '^ID=ubuntu' /etc/os-release; then
		$sudo apt-get install -y -qq software-properties-common >/dev/null || true
		$sudo add-apt-repository -y multiverse >/dev/null || true
	fi
}

enable_components
say "installing nvidia-cuda-toolkit (a few minutes, about 3 GB)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
	nvidia-cuda-toolkit nvidia-cuda-dev >/dev/null

if root=$(have_toolkit); then
	say "installed the CUDA toolkit at $root"
	echo "$root"
	exit 0
fi
say "nvidia-cuda-toolkit installed, but cuda.h, cudaProfiler.h or nvtx3/ is still missing"
exit 1
