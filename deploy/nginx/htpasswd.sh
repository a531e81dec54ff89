#!/usr/bin/env bash
# Add (or change) a user of the sign-in nginx puts in front of the dashboard and the Dagster
# UI (deploy/nginx/templates/tradeloop.conf.template: basic auth). The password is read from
# stdin (one line), or made up and printed when stdin is a terminal and empty; it is stored
# hashed with SHA-512 crypt (openssl passwd -6), which nginx checks through the C library.
#
#   deploy/nginx/htpasswd.sh USER [FILE]      (default FILE: deploy/local/htpasswd, git-ignored)
#   printf '%s\n' "$PASSWORD" | deploy/nginx/htpasswd.sh ops
#   deploy/nginx/htpasswd.sh --delete USER [FILE]
#
# Only ever serve it over https: basic auth sends the password with every request.
set -euo pipefail
delete=0
if [ "${1:-}" = "--delete" ]; then delete=1; shift; fi
user="${1:?usage: htpasswd.sh [--delete] USER [FILE]}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
file="${2:-$here/../local/htpasswd}"
[[ "$user" =~ ^[A-Za-z0-9._@-]{1,64}$ ]] || { echo "htpasswd: user '$user': use 1 to 64 letters, digits or . _ @ -" >&2; exit 2; }
command -v openssl > /dev/null || { echo "htpasswd: openssl is missing; install it (Debian: apt-get install openssl)" >&2; exit 1; }
mkdir -p "$(dirname "$file")"
touch "$file"
kept="$(grep -v "^$user:" "$file" || true)"
if [ "$delete" = 1 ]; then
  printf '%s\n' "$kept" | sed '/^$/d' > "$file.tmp"
  mv "$file.tmp" "$file"
  echo "removed $user from $file"
  exit 0
fi
if [ -t 0 ]; then
  password="$(openssl rand -base64 18)"
  echo "password of $user: $password"
else
  IFS= read -r password || true
  [ -n "$password" ] || { echo "htpasswd: an empty password on stdin; give one, or run it on a terminal to get one made up" >&2; exit 2; }
fi
hash="$(printf '%s' "$password" | openssl passwd -6 -stdin)"
{ printf '%s\n' "$kept" | sed '/^$/d'; printf '%s:%s\n' "$user" "$hash"; } > "$file.tmp"
chmod 644 "$file.tmp"  # nginx's workers read it; it holds hashes only
mv "$file.tmp" "$file"
echo "$user can sign in (file: $file)"
