#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The split enforced at link time (STYLE 11): the privileged monitor links neither json-c nor
# the Varlink code, and the worker carries none of the monitor's request table.
# Usage: check-links.sh TSMD [TSMD_WORKER]. Runs in: tests.
set -eu

tsmd=$1
worker=${2:-}
fail=0

if readelf -d "$tsmd" | grep -q 'NEEDED.*libjson-c'; then
    echo "$tsmd links libjson-c" >&2
    fail=1
fi
if nm "$tsmd" | grep -E ' [TtDdBbRr] (json_|varlink_|base64_)' >&2; then
    echo "$tsmd carries JSON or Varlink code" >&2
    fail=1
fi
if [ -n "$worker" ] && nm "$worker" | grep -E ' [Tt] (monitor_dispatch_|monitor_contexts_|monitor_iommufd_)' >&2; then
    echo "$worker carries the monitor's request table" >&2
    fail=1
fi
[ "$fail" = 0 ] && echo "ok"
exit "$fail"
