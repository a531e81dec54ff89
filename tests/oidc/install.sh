#!/usr/bin/env bash
# Install the test OIDC provider (oidc-provider, pinned by package-lock.json) into a cache
# folder outside the repository, once per lock: $TRADELOOP_TEST_CACHE (default
# ~/.cache/tradeloop)/oidc-provider-<lock hash>. Prints that folder. `npm ci` installs exactly
# the lock (integrity-checked) from the npm registry the machine is configured with.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lock_hash="$(sha256sum "$here/package-lock.json" | cut -c1-12)"
cache="${TRADELOOP_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tradeloop}"
target="$cache/oidc-provider-$lock_hash"
if [ ! -f "$target/.installed" ]; then
  command -v npm > /dev/null || { echo "tests: npm is missing: install Node.js 20 or later with npm" >&2; exit 1; }
  mkdir -p "$cache"
  work="$(mktemp -d "$cache/.oidc-provider.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  cp "$here/package.json" "$here/package-lock.json" "$work/"
  (cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error > /dev/null)
  touch "$work/.installed"
  rm -rf "$target"
  mv "$work" "$target" 2> /dev/null || [ -f "$target/.installed" ]  # another install won the race: use it
fi
echo "$target"
