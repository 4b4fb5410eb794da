#!/usr/bin/env bash
# Write .env beside docker-compose.yml with a fresh secret for each variable compose requires
# (docker-compose.yml has no defaults for them, and every service refuses a value the
# repository publishes). An existing .env is kept: its secrets already sign keys and sessions.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -e .env ]; then
  echo ".env exists; keeping it (delete it to draw new secrets)" >&2
  exit 0
fi
draw() { python3 -c 'import secrets; print(secrets.token_hex(32))'; }
umask 077
{
  echo "TOLLWAY_KEY_PEPPER=$(draw)"
  echo "STRIPE_WEBHOOK_SECRET=whsec_$(draw)"
  echo "TOLLWAY_USAGE_LOG_SECRET=$(draw)"
  echo "TOLLWAY_PORTAL_SECRET=$(draw)"
  echo "TOLLWAY_BACKEND_TOKEN=$(draw)"
} > .env
echo "wrote .env with fresh secrets (mode 600)" >&2
