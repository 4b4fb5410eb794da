#!/usr/bin/env bash
# Write deploy/kubernetes/overlays/dev/secrets.env: a fresh value for each key that
# deploy/kubernetes/secrets.example.env lists (the dev overlay's secretGenerator reads it).
# The Stripe key is the stand-in's. An existing file is kept: its secrets already sign keys
# and sessions. DIR: another copy of deploy/kubernetes (the tests render one).
#   scripts/k8s-dev-secrets.sh [DIR]
set -euo pipefail
cd "${1:-$(dirname "$0")/../deploy/kubernetes}"
out=overlays/dev/secrets.env
if [ -e "$out" ]; then
  echo "$out exists; keeping it (delete it to draw new secrets)" >&2
  exit 0
fi
draw() { python3 -c 'import secrets; print(secrets.token_hex(32))'; }
umask 077
while IFS= read -r line; do
  case "$line" in
    ''|'#'*) continue ;;
  esac
  key="${line%%=*}"
  case "$key" in
    stripe-api-key) echo "$key=sk_test_standin" ;;
    stripe-webhook-secret) echo "$key=whsec_$(draw)" ;;
    *) echo "$key=$(draw)" ;;
  esac
done < secrets.example.env > "$out"
echo "wrote $PWD/$out with fresh secrets (mode 600)" >&2
