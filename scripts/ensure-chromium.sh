#!/usr/bin/env bash
# The portal's browser test drives Debian's headless Chromium (package chromium) through
# Playwright on that executable (never a browser Playwright downloads).
exec "$(dirname "$0")/ensure-apt.sh" "the portal's browser test" chromium chromium -- fonts-dejavu-core
