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

have_toolkit() {
	local root
	for root in "${CUDA_HOME:-}" /usr/local/cuda /usr; do
		[ -n "$root" ] || continue
		if [ -f "$root/include/cuda.h" ] && [ -f "$root/include/cudaProfiler.h" ] &&
			[ -d "$root/include/nvtx3" ]; then
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

if ! command -v apt-get >/dev/null; then
	say "no CUDA toolkit found and no apt-get to install one."
	say "install the CUDA toolkit (cuda.h, cudaProfiler.h, nvtx3/, nvcc) and set CUDA_HOME."
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
