#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Interoperability test: drives tsmd with Debian's Go varlink library.
#
# Usage: run-interop.sh TSMD SOURCE_ROOT
#
# Builds tests/interop/varlink-interop.go offline (GOPATH mode against the Debian package
# golang-github-varlink-go-dev, GOPROXY=off, no network), starts TSMD on a socket in a
# private temporary directory, runs the Go client against it and exits with the client's
# status. Output is TAP.
#
# Environment:
#   GO_INTEROP_BUILD_DIR  where the Go build cache and binary live (meson sets it to the
#                         build directory, so later runs are incremental); default: a
#                         temporary directory removed on exit. Never $HOME.
#   GO_INTEROP_GOPATH     the GOPATH holding github.com/varlink/go; default /usr/share/gocode.
#   GO_INTEROP_SKIP_EXIT  exit status when go or the varlink Go source is missing: 77
#                         (the automake convention) by default; meson's TAP protocol needs 0
#                         with a "1..0 # SKIP" plan, so meson.build sets it to 0.
#   CI                    when "true", a missing go or varlink source is a failure, not a
#                         skip: CI installs golang-go and golang-github-varlink-go-dev.
set -u

if [ $# -ne 2 ]; then
        echo "Usage: $0 TSMD SOURCE_ROOT" >&2
        exit 2
fi
tsmd=$1
srcroot=$2
gopath=${GO_INTEROP_GOPATH:-/usr/share/gocode}
skip_exit=${GO_INTEROP_SKIP_EXIT:-77}

skip() {
        if [ "${CI:-}" = true ]; then
                echo "not ok 1 - prerequisites: $1 (CI must install golang-go and golang-github-varlink-go-dev)"
                echo "1..1"
                exit 1
        fi
        echo "1..0 # SKIP $1"
        exit "$skip_exit"
}

command -v go >/dev/null 2>&1 || skip "go not found (apt install golang-go)"
[ -f "$gopath/src/github.com/varlink/go/varlink/connection.go" ] ||
        skip "$gopath/src/github.com/varlink/go not found (apt install golang-github-varlink-go-dev)"

bail() {
        echo "not ok 1 - $1"
        shift
        for f in "$@"; do
                [ -f "$f" ] && sed 's/^/# /' "$f" && cat "$f" >&2
        done
        echo "1..1"
        exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tsmd-interop.XXXXXXXXXX") || bail "mktemp -d"
# tsmd's worker runs as its own user and reads the configuration in here.
chmod 0755 "$tmp"
tsmd_pid=
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
        if [ -n "$tsmd_pid" ]; then
                kill -TERM "$tsmd_pid" 2>/dev/null
                wait "$tsmd_pid" 2>/dev/null
        fi
        rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ -x "$tsmd" ] || bail "tsmd binary '$tsmd' is not executable"
[ -f "$srcroot/tests/interop/varlink-interop.go" ] || bail "'$srcroot' is not the tsmd source tree"

# Offline build: GOPATH mode finds github.com/varlink/go in the Debian package's GOPATH and
# the standard library in GOROOT; no go.mod, so the module proxy is never consulted
# (GOPROXY=off makes sure of it). The build cache must be writable and must not be in
# $HOME, which may be read-only.
gobuild=${GO_INTEROP_BUILD_DIR:-$tmp}/go
mkdir -p "$gobuild/cache" || bail "mkdir $gobuild/cache"
client=$gobuild/varlink-interop
if ! env GO111MODULE=off GOPATH="$gopath" GOCACHE="$gobuild/cache" GOTMPDIR="$tmp" \
        GOPROXY=off GOSUMDB=off GOFLAGS= GOENV=off GOTOOLCHAIN=local GOWORK=off \
        go build -o "$client" "$srcroot/tests/interop/varlink-interop.go" >"$tmp/build.log" 2>&1; then
        bail "build the Go client (go build, GOPATH=$gopath)" "$tmp/build.log"
fi

sock=$tmp/tsmd.sock
# Its own audit directory and an empty policy (this test uses no io.tsmd.Guest call).
printf '[Audit]\nDirectory=%s/audit\nJournal=no\n[Policy]\nFile=%s/policy.conf\nDropInDirectory=%s/policy.d\n[Guest]\nContextStateDirectory=%s/contexts\n' \
        "$tmp" "$tmp" "$tmp" "$tmp" >"$tmp/tsmd.conf"
"$tsmd" --config="$tmp/tsmd.conf" --socket="$sock" 2>"$tmp/tsmd.log" &
tsmd_pid=$!

# Wait up to 10 s for the socket, without connecting to it (a connection would show up in
# the counts the client checks).
for _ in $(seq 100); do
        [ -S "$sock" ] && break
        kill -0 "$tsmd_pid" 2>/dev/null || break
        sleep 0.1
done
if [ ! -S "$sock" ]; then
        if kill -0 "$tsmd_pid" 2>/dev/null; then
                bail "tsmd did not create $sock within 10 s" "$tmp/tsmd.log"
        fi
        wait "$tsmd_pid"
        rc=$?
        tsmd_pid=
        bail "tsmd exited with status $rc before listening" "$tmp/tsmd.log"
fi

"$client" "unix:$sock" "$srcroot/proto"
rc=$?

if ! kill -0 "$tsmd_pid" 2>/dev/null; then
        echo "# tsmd is no longer running"
        rc=1
fi
if [ $rc -ne 0 ]; then
        echo "# tsmd's log:"
        sed 's/^/#   /' "$tmp/tsmd.log"
        cat "$tmp/tsmd.log" >&2
fi
exit $rc
