#!/usr/bin/env bash
# Optional part: Debian's OpenSSH server and client, for the remote-host tests (tests/remote starts a throwaway sshd
# inside a network namespace with keys it makes itself). Idempotent; starts nothing and enables no service.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]} for the remote-host tests" >&2
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
# the package may start its own sshd through the init system; the tests need none running
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet ssh 2>/dev/null; then
  systemctl disable --now ssh >/dev/null 2>&1 || true
fi
