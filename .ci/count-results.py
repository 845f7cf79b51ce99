#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Counts the results of "meson test" in build directories:
#   count-results.py BUILD-DIR...
# Each BUILD-DIR holds what .ci/run leaves there: ci-tests.list ("meson test --list", every
# test that was to run), ci-test.status (meson test's exit status) and meson-logs/testlog.json.
# Every TAP line "ok"/"not ok" of a TAP test is one result (skips are reported separately),
# other tests count once by their verdict. A TAP test that failed without printing a "not ok"
# (a crash, a timeout) counts as failed; so does each listed test the log lacks (meson test
# killed, or stopped early), each line of the log that is not JSON (cut short), and a meson
# test that exited other than 0 or 1, or 1 with no failure in its log. A test that should fail
# (EXPECTEDFAIL) counts once as passed, whatever its TAP lines say. A build directory with no
# list failed to build: one failure. The last line is "N passed, N failed"; skips are counted
# on the line before it; the exit status is 1 if anything failed.
import json
import os
import re
import sys

passed = failed = skipped = 0
failures = []


def fail(what):
    global failed
    failed += 1
    failures.append(what)


def count_test(t):
    global passed, skipped
    name, result = t.get('name'), t.get('result')
    if result == 'EXPECTEDFAIL':
        passed += 1
        return
    out = t.get('stdout') or ''
    tap = [l for l in out.splitlines() if re.match(r'^(not )?ok\b', l)]
    if tap:
        for l in tap:
            if l.startswith('not ok'):
                if '# TODO' in l:
                    passed += 1
                else:
                    fail('%s: %s' % (name, l))
            elif '# SKIP' in l or '# skip' in l:
                skipped += 1
            else:
                passed += 1
        if result not in ('OK', 'SKIP') and not any(l.startswith('not ok') for l in tap):
            fail('%s: %s' % (name, result))
    elif result == 'OK':
        passed += 1
    elif result == 'SKIP':
        skipped += 1
    else:
        fail('%s: %s' % (name, result))


def read_lines(path):
    with open(path, encoding='utf-8', errors='replace') as f:
        return f.read().splitlines()


def count_build(build):
    try:
        listed = [l.strip() for l in read_lines(os.path.join(build, 'ci-tests.list')) if l.strip()]
    except OSError as e:
        fail('%s: no list of its tests (did it build?): %s' % (build, e.strerror))
        return
    log = os.path.join(build, 'meson-logs', 'testlog.json')
    try:
        lines = read_lines(log)
    except OSError as e:
        lines = []
        fail('%s: %s' % (log, e.strerror))
    failed_before = failed
    seen = set()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            t = json.loads(line)
            if not isinstance(t, dict):
                raise ValueError('not an object')
        except ValueError:
            fail('%s:%d: not a JSON object (cut short?)' % (log, i))
            continue
        seen.add(t.get('name'))
        count_test(t)
    for name in listed:
        if name not in seen:
            fail('%s: no result in %s (meson test stopped before it?)' % (name, log))
    try:
        status = int(read_lines(os.path.join(build, 'ci-test.status'))[0])
    except (OSError, IndexError, ValueError):
        fail('%s: meson test left no exit status (did it finish?)' % build)
        return
    if status not in (0, 1):
        fail('%s: meson test exited %d' % (build, status))
    elif status == 1 and failed == failed_before:
        fail('%s: meson test exited 1, and its log names no failure' % build)


for build in sys.argv[1:]:
    count_build(build)

for f in failures:
    print('FAILED: ' + f)
if skipped:
    print('%d skipped' % skipped)
print('%d passed, %d failed' % (passed, failed))
sys.exit(1 if failed else 0)
