#!/usr/bin/env bash
# A self-signed TLS certificate for nginx (deploy/nginx), for local use and tests: an ECDSA
# P-256 key and a certificate valid for 825 days, for the names in TLS_NAMES (default:
# localhost and 127.0.0.1; DNS names and IP addresses both work).
#
#   deploy/tls/make-cert.sh [DIR]        writes DIR/tradeloop.crt and DIR/tradeloop.key
#                                        (default DIR: deploy/local/tls, which git ignores)
#   TLS_NAMES="trading.example 10.0.0.5" deploy/tls/make-cert.sh
#
# An existing pair is kept (delete it, or pass --force first, to make a new one). Browsers
# and clients warn about a self-signed certificate: trust DIR/tradeloop.crt where you use it
# (curl --cacert, httpx verify=...), or use a real one (docs/operations.md, "TLS certificates").
# Needs only openssl.
set -euo pipefail
force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${1:-$here/../local/tls}"
names="${TLS_NAMES:-localhost 127.0.0.1}"
command -v openssl > /dev/null || { echo "make-cert: openssl is missing; install it (Debian: apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
crt="$dir/tradeloop.crt" key="$dir/tradeloop.key"
if [ "$force" = 0 ] && [ -s "$crt" ] && [ -s "$key" ]; then
  echo "$crt exists; kept (--force makes a new one)"
  exit 0
fi
san=""
for name in $names; do
  if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then san="$san,IP:$name"; else san="$san,DNS:$name"; fi
done
first="${names%% *}"
umask 077
openssl req -x509 -new -nodes -sha256 -days 825 \
  -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -keyout "$key.tmp" -out "$crt.tmp" \
  -subj "/CN=$first/O=tradeloop (self-signed)" \
  -addext "subjectAltName=${san#,}" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,digitalSignature,keyCertSign" \
  -addext "extendedKeyUsage=serverAuth" 2> /dev/null
chmod 600 "$key.tmp"
chmod 644 "$crt.tmp"
mv "$key.tmp" "$key"
mv "$crt.tmp" "$crt"
echo "wrote $crt and $key for ${names// /, }"
