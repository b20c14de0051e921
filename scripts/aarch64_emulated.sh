#!/usr/bin/env bash
# The aarch64 subset of the test suite (tests marked `aarch64`), run on arm64 under qemu-user emulation:
# edgeopt installed from its wheel, with onnxruntime's aarch64 wheel, in a Debian arm64 root file system.
#
#   bash scripts/aarch64_emulated.sh          # as root (apt-get, mount, chroot); .ci/run calls it
#
# What it does:
#   1. Installs qemu-user-static, binfmt-support and debootstrap (Debian packages) when missing, mounts
#      binfmt_misc when it is not, and registers qemu-aarch64 (update-binfmts --enable qemu-aarch64).
#   2. Builds a Debian bookworm arm64 root file system with debootstrap (minbase + python3) and a venv in it
#      (/opt/edgeopt-venv) holding the Python packages below at the versions pinned in requirements-dev.txt,
#      their aarch64 wheels downloaded on this host (pip download --platform), installed in the chroot
#      without an index. It is cached at .cache/aarch64-rootfs (git-ignored) and reused while its key, the
#      hash of the package lists below (DEB_PACKAGES, PY_PACKAGES with their pins), is unchanged: a change
#      of the Python pins rebuilds the venv only, a change of SUITE or DEB_PACKAGES the whole root fs.
#   3. Builds edgeopt's wheel here, installs it into that venv (pip check: its dependencies are there, torch
#      is not), copies tests/ and pyproject.toml (pytest's settings; no source tree, so `import edgeopt` is
#      the installed wheel), mounts /proc and /dev into the chroot (never /sys: ONNX Runtime's cpuinfo
#      segfaults under qemu when it can read /sys) and runs `pytest -m aarch64` there.
#   4. Prints the test count and the durations. Exit status: pytest's (non-zero fails CI), 2 when the
#      emulation cannot be set up.
#
# Measured on the 2-vCPU build VM (Debian 12, qemu 7.2), 25 tests: cold 13 min 41 s (root fs 9 min 36 s
# of it, with other jobs loading the VM; 4 min 34 s for debootstrap alone on a quieter run), warm 3 min 20 s.
# Settings: EDGEOPT_QEMU_CPU (the emulated core, default cortex-a76), EDGEOPT_DEBIAN_MIRROR.
#
# Timings under emulation are meaningless (qemu-user ran a CNN ~220x slower than native: FIELD_NOTES); the
# subset asserts no speed. Inside the chroot /proc/cpuinfo is this host's x86 text, so board identity is
# tested from captured files (tests/data/boards, tests/test_boards.py), not from the emulated machine.
#
# Decision: no binfmt_misc, no aarch64. When binfmt_misc cannot be mounted or qemu-aarch64 cannot be
# registered (an unprivileged container, a kernel without binfmt_misc, no root), the script fails with the
# reason instead of skipping. Issue 9 asks for the aarch64 subset to pass in CI; a skip that prints "ok"
# would let CI go green on a machine that never ran a line of arm64 code, and nobody reads skip notices.
# Where a machine is known not to support it (a developer laptop without root), the skip must be asked
# for by name: EDGEOPT_AARCH64=skip makes the script print that it did not run and exit 0, and the
# CI log says so. (The registration is system-wide and persists until reboot; it only adds a handler for
# arm64 ELF files.)
set -euo pipefail
cd "$(dirname "$0")/.."

# All in a function: bash reads it whole before running it, so an edit of this file during a run (a shared
# checkout) cannot change what the run does.
main() {
started=$(date +%s)

SUITE=bookworm
MIRROR="${EDGEOPT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The cache key is made of these lists (and the pins requirements-dev.txt gives the Python ones).
DEB_PACKAGES="python3"
# edgeopt's dependencies (pyproject.toml) + what the marked tests need: no torch, no openvino.
PY_PACKAGES="numpy onnx onnxruntime pydantic PyYAML psutil tabulate tqdm Pillow matplotlib xmlschema pytest pytest-timeout"
CACHE=.cache/aarch64-rootfs
VENV=/opt/edgeopt-venv
WHEELS=/opt/edgeopt-wheels
# The emulated core: a Raspberry Pi 5's Cortex-A76 (dot product, FP16, no i8mm, no SVE; a Jetson Orin's
# A78AE adds only pointer authentication), so that ONNX Runtime, which reads the CPU's features from the
# auxiliary vector, picks the kernels it picks on the boards; qemu's default 'max' has SVE2 and i8mm.
QEMU_CPU="${EDGEOPT_QEMU_CPU:-cortex-a76}"

say() { echo "aarch64: $*" >&2; }
die() { echo "aarch64: FAILED: $*" >&2; exit 2; }

if [ "${EDGEOPT_AARCH64:-}" = skip ]; then
  echo "aarch64: NOT RUN (EDGEOPT_AARCH64=skip): the arm64 emulated subset did not run on this machine" >&2
  exit 0
fi
[ "$(id -u)" = 0 ] || die "needs root (apt-get, binfmt_misc, debootstrap, mount, chroot); set EDGEOPT_AARCH64=skip to skip by name"
[ "$(uname -m)" = x86_64 ] || die "written for an x86_64 host (uname -m: $(uname -m))"
[ -x .venv/bin/python ] || source scripts/env.sh  # the host venv builds the wheel and downloads the aarch64 wheels

# pinned versions: every Python package must have its pin in requirements-dev.txt
pins=()
for name in $PY_PACKAGES; do
  pin="$(grep -i -E "^${name}==" requirements-dev.txt | sed 's/[[:space:]#].*//' || true)"
  [ -n "$pin" ] || die "requirements-dev.txt pins no version of $name"
  pins+=("$pin")
done
base_key="$(printf '%s\n' "$SUITE" "$DEB_PACKAGES" | sha256sum | cut -c1-16)"  # the Debian root fs
key="$(printf '%s\n' "$base_key" "${pins[@]}" | sha256sum | cut -c1-16)"  # ... and the venv in it

# ------------------------------------------------------------------------ 1. qemu-user and binfmt_misc
missing=""
command -v debootstrap >/dev/null || missing="$missing debootstrap"
[ -e /usr/bin/qemu-aarch64-static ] || missing="$missing qemu-user-static"
command -v update-binfmts >/dev/null || missing="$missing binfmt-support"
if [ -n "$missing" ]; then
  say "installing$missing"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null; } \
    || die "apt-get install$missing failed"
fi
binfmt=/proc/sys/fs/binfmt_misc
if [ ! -e "$binfmt/register" ]; then
  mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null \
    || die "binfmt_misc is not mounted and cannot be (mount -t binfmt_misc binfmt_misc $binfmt: not privileged, or no kernel support)"
fi
if ! grep -qx enabled "$binfmt/qemu-aarch64" 2>/dev/null; then
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  grep -qx enabled "$binfmt/qemu-aarch64" 2>/dev/null \
    || die "qemu-aarch64 is not registered in binfmt_misc (update-binfmts --enable qemu-aarch64 failed)"
fi
interpreter="$(sed -n 's/^interpreter //p' "$binfmt/qemu-aarch64")"
fixed=no  # flag F: the kernel opened the interpreter at registration, a chroot needs no copy of it
grep -q '^flags: .*F' "$binfmt/qemu-aarch64" && fixed=yes

# ---------------------------------------------------------------------------------- 2. the root fs
mkdir -p .cache
exec 9>.cache/aarch64-rootfs.lock
flock 9  # one build or run at a time in this checkout

here="$(pwd -P)"
mounts_under_cache() {  # every mount point inside the cached or building root fs, deepest first
  findmnt -rn -o TARGET | grep -E "^$here/$CACHE(\.build)?/" | sort -r || true
}
unmount_all() {
  local m
  for m in $(mounts_under_cache); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
}
trap unmount_all EXIT
unmount_all  # left over by an interrupted run: never rm -rf a tree with /dev mounted in it
[ -z "$(mounts_under_cache)" ] || die "cannot unmount $(mounts_under_cache | tr '\n' ' ')"
mount_proc_dev() {  # /proc and /dev only: never /sys
  local root="$1"
  mount -t proc proc "$root/proc" || die "mount -t proc $root/proc failed"
  { mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"; } || die "mount --rbind /dev $root/dev failed"
}
in_chroot() {  # in_chroot ROOT COMMAND...: a clean environment, no host variables
  local root="$1"; shift
  chroot "$root" /usr/bin/env -i PATH=$VENV/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 QEMU_CPU="$QEMU_CPU" "$@"
}

cold=no
rootfs_s=0
if [ "$(cat "$CACHE/.edgeopt-key" 2>/dev/null)" != "$key" ]; then
  cold=yes
  t0=$(date +%s)
  # The Debian base (debootstrap, the slow part) is kept when only the Python pins changed, and a base
  # left by an interrupted build is finished rather than redone.
  if [ "$(cat "$CACHE/.edgeopt-base" 2>/dev/null)" = "$base_key" ]; then
    build="$CACHE"
  else
    build="$CACHE.build"
    if [ "$(cat "$build/.edgeopt-base" 2>/dev/null)" != "$base_key" ]; then
      rm -rf --one-file-system "$build"
      say "building the Debian $SUITE arm64 root file system (debootstrap, minbase + $DEB_PACKAGES; minutes)"
      log=.cache/aarch64-debootstrap.log
      mkdir -p .cache/aarch64-debs  # the .deb files, kept for a rebuild
      debootstrap --arch=arm64 --variant=minbase --include="${DEB_PACKAGES// /,}" \
          --cache-dir="$here/.cache/aarch64-debs" "$SUITE" "$build" "$MIRROR" >"$log" 2>&1 \
        || { tail -n 20 "$log" >&2; die "debootstrap failed (log: $log)"; }
      unmount_all  # debootstrap mounts proc and sys in the target itself while it configures packages
      echo "$base_key" >"$build/.edgeopt-base"
    fi
  fi
  rm -f "$build/.edgeopt-key"
  rm -rf --one-file-system "$build$VENV" "$build$WHEELS"
  if [ "$fixed" = no ]; then  # the kernel looks the interpreter up inside the chroot
    mkdir -p "$build$(dirname "$interpreter")" && cp -L "$interpreter" "$build$interpreter"
  fi
  in_chroot "$build" /bin/true || die "arm64 binaries do not run in the root file system (binfmt_misc: $interpreter)"
  pyver="$(in_chroot "$build" python3 -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"
  glibc="$(in_chroot "$build" python3 -c 'import platform; print(platform.libc_ver()[1].split(".")[1])')"
  platforms=(--platform manylinux2014_aarch64)
  for minor in $(seq 17 "$glibc"); do platforms+=(--platform "manylinux_2_${minor}_aarch64"); done
  say "downloading aarch64 wheels for CPython $pyver, glibc 2.$glibc: ${pins[*]}"
  mkdir -p "$build$WHEELS"
  set +e
  .venv/bin/python -m pip download -q -d "$build$WHEELS" --only-binary=:all: --implementation cp \
      --python-version "$pyver" --abi "cp$pyver" --abi abi3 --abi none "${platforms[@]}" pip "${pins[@]}" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" >&2
  status=${PIPESTATUS[0]}
  set -e
  [ "$status" = 0 ] || die "pip download of the aarch64 wheels failed"
  pipwheel="$(cd "$build$WHEELS" && ls pip-*.whl | head -n 1)"
  say "installing them into $VENV (in the chroot, no index)"
  in_chroot "$build" python3 -m venv --without-pip "$VENV"
  in_chroot "$build" "$VENV/bin/python" "$WHEELS/$pipwheel/pip" install -q --no-index --find-links "$WHEELS" \
      --no-compile pip "${pins[@]}" || die "pip install in the chroot failed"
  echo "$key" >"$build/.edgeopt-key"
  if [ "$build" != "$CACHE" ]; then
    rm -rf --one-file-system "$CACHE"
    mv "$build" "$CACHE"
  fi
  rootfs_s=$(( $(date +%s) - t0 ))
  say "root file system ready in ${rootfs_s} s"
fi
root="$CACHE"
[ "$fixed" = yes ] || [ -e "$root$interpreter" ] || { mkdir -p "$root$(dirname "$interpreter")"; cp -L "$interpreter" "$root$interpreter"; }

# --------------------------------------------------------------------- 3. the wheel and the tests
t0=$(date +%s)
out="$root/tmp/edgeopt"
rm -rf --one-file-system "$out" && mkdir -p "$out/wheel" "$out/work"
.venv/bin/python -m pip wheel -q --no-deps --no-build-isolation -w "$out/wheel" . >/dev/null || die "building the wheel failed"
wheel="$(cd "$out/wheel" && ls edgeopt-*.whl)"
cp pyproject.toml "$out/work/"
cp -r tests "$out/work/tests"
rm -rf "$out/work/tests/conformance"
find "$out/work/tests" -name __pycache__ -prune -exec rm -rf {} +
files="$(cd tests && grep -l -E '^(@pytest\.mark\.aarch64|pytestmark = pytest\.mark\.aarch64)' test_*.py | sed 's|^|tests/|' | tr '\n' ' ')"
[ -n "$files" ] || die "no test file has tests marked aarch64"

mount_proc_dev "$root"
in_chroot "$root" pip install -q --no-index --no-deps --force-reinstall --no-compile "/tmp/edgeopt/wheel/$wheel" \
  || die "installing $wheel in the chroot failed"
in_chroot "$root" pip check >&2 || die "the wheel's dependencies are not all in the chroot venv"
if in_chroot "$root" python -c "import torch" 2>/dev/null; then die "torch is importable in the chroot venv"; fi
say "running pytest -m aarch64 on arm64 (qemu-user, -cpu $QEMU_CPU) in $root: $files"
set +e
chroot "$root" /usr/bin/env -i PATH=$VENV/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 QEMU_CPU="$QEMU_CPU" \
  /bin/sh -c "cd /tmp/edgeopt/work && exec timeout 2400 python -m pytest -m aarch64 -p no:cacheprovider -q --durations=10 $files" \
  2>&1 | tee "$out/pytest.log"
rc=${PIPESTATUS[0]}
set -e
unmount_all
tests_s=$(( $(date +%s) - t0 ))

# ------------------------------------------------------------------------------------- 4. summary
summary="$(grep -E '^[=]* *[0-9]+ (passed|failed)|^[=]* *[0-9]+ .*(passed|failed|error)' "$out/pytest.log" | tail -n 1 | tr -d '=' | sed 's/^ *//')"
count="$(echo "$summary" | grep -o -E '[0-9]+ (passed|failed|errors?|skipped|xfailed|xpassed)' | awk '{s+=$1} END {print s+0}')"
total=$(( $(date +%s) - started ))
state=$([ "$cold" = yes ] && echo "cold: root fs built in ${rootfs_s} s" || echo "warm: cached root fs $CACHE")
echo "aarch64 emulated subset: ${count} tests (${summary:-no pytest summary}); ${tests_s} s wheel+tests, ${total} s in all (${state})"
exit "$rc"
}

main "$@"
