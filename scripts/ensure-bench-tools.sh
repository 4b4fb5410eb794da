#!/usr/bin/env bash
# make bench's load generators.
exec "$(dirname "$0")/ensure-apt.sh" "make bench" h2load nghttp2-client wrk wrk
