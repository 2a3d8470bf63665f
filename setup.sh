#!/usr/bin/env bash
# setup.sh: install everything sessrec needs on Debian 12, then (optionally)
# run the demo or the test suite. Safe to run again: every step checks first.
#
#   sudo ./setup.sh           install only
#   sudo ./setup.sh --demo    install, then record a short session and show it
#   sudo ./setup.sh --test    install, then run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
venv="$here/.venv"
say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (sudo ./setup.sh): it installs packages and loads BPF"
command -v apt-get >/dev/null || die "needs a Debian-family system with apt-get"

mode=install
case "${1:-}" in
  "") ;;
  --demo) mode=demo ;;
  --test) mode=test ;;
  -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
  *) die "unknown option '$1' (use --demo, --test or nothing)" ;;
esac

# 1. Distribution packages. BCC comes from Debian (python3-bpfcc); the PyPI
#    package called "bcc" is unrelated.
release=$(uname -r)
arch=$(dpkg --print-architecture)
pkgs=(python3-bpfcc bpfcc-tools python3-venv python3-dev gcc make clang auditd iproute2 zstd chromium bpftool
      openssh-server openssh-client openssh-sftp-server)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
headers=""
if [ ! -e "/lib/modules/$release/build/include" ]; then
  # Prefer the exact headers; otherwise the distribution's default ones,
  # which work for tracepoint programs (no kernel struct is read through them).
  if apt-cache show "linux-headers-$release" >/dev/null 2>&1; then headers="linux-headers-$release"
  else headers="linux-headers-$arch"; fi
  dpkg-query -W -f='${Status}' "$headers" 2>/dev/null | grep -q "ok installed" || missing+=("$headers")
fi
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  # An older apt list may lack the exact headers package we asked about.
  if [ -n "$headers" ] && [ "$headers" != "linux-headers-$arch" ] && \
     ! dpkg-query -W "$headers" >/dev/null 2>&1; then
    apt-get install -y -q --no-install-recommends "linux-headers-$arch" >/dev/null
  fi
fi

# 2. Kernel headers where BCC looks for them.
if [ ! -e "/lib/modules/$release/build/include" ]; then
  build=$(ls -d /usr/src/linux-headers-*-"$arch" 2>/dev/null | sort -V | tail -n 1)
  [ -n "$build" ] || die "no kernel headers under /usr/src after installing them"
  common="${build%-"$arch"}-common"
  [ -d "$common" ] || common="$build"
  mkdir -p "/lib/modules/$release"
  ln -sfn "$build" "/lib/modules/$release/build"
  ln -sfn "$common" "/lib/modules/$release/source"
  say "linked /lib/modules/$release/build -> $build (headers do not match the kernel; sessrec reads no kernel struct through them)"
fi

# 3. tracefs, where BCC finds tracepoints. sessrec mounts it itself too.
if [ ! -d /sys/kernel/tracing/events ] && [ ! -d /sys/kernel/debug/tracing/events ]; then
  mount -t tracefs nodev /sys/kernel/tracing || die "cannot mount tracefs at /sys/kernel/tracing"
fi

# 4. A venv that sees the system's bcc bindings, with the project in it.
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
stamp="$venv/.sessrec-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing sessrec and its Python dependencies into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -e ".[dev]"
  touch "$stamp"
fi
"$venv/bin/python" -c "import bcc" 2>/dev/null || die "the venv cannot import bcc (python3-bpfcc)"

# 5. The read side's hot modules compiled with mypyc (replay/compiled.py):
#    the exports and tree about a third faster. Optional: without them it
#    runs as Python.
#    It compiles only when they are not built from the current sources.
"$venv/bin/python" -m replay.build_compiled || say "warning: the read side stays pure Python (slower)"
ln -sfn "$venv/bin/sessrec" /usr/local/bin/sessrec
say "ready: $(command -v sessrec)"

case "$mode" in
  demo) exec "$here/demo/run" ;;
  test) exec "$here/tests/run" ;;
esac
