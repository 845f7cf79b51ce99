#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Counts results from meson testlog.json files: every TAP line "ok"/"not ok" of a TAP test
# is one result (skips are reported separately), other tests count once by their verdict.
# A TAP test that failed without printing a "not ok" (a crash, a timeout) counts as failed.
import json
import re
import sys

passed = failed = skipped = 0
failures = []
for path in sys.argv[1:]:
    try:
        lines = open(path, encoding='utf-8', errors='replace').read().splitlines()
    except OSError as e:
        failed += 1
        failures.append('%s: %s' % (path, e))
        continue
    for line in lines:
        t = json.loads(line)
        name, result = t.get('name'), t.get('result')
        out = t.get('stdout') or ''
        tap = [l for l in out.splitlines() if re.match(r'^(not )?ok\b', l)]
        if tap:
            for l in tap:
                if l.startswith('not ok'):
                    if '# TODO' in l:
                        passed += 1
                    else:
                        failed += 1
                        failures.append('%s: %s' % (name, l))
                elif '# SKIP' in l or '# skip' in l:
                    skipped += 1
                else:
                    passed += 1
            if result not in ('OK', 'EXPECTEDFAIL', 'SKIP') and not any(l.startswith('not ok') for l in tap):
                failed += 1
                failures.append('%s: %s' % (name, result))
        elif result in ('OK', 'EXPECTEDFAIL'):
            passed += 1
        elif result == 'SKIP':
            skipped += 1
        else:
            failed += 1
            failures.append('%s: %s' % (name, result))

for f in failures:
    print('FAILED: ' + f)
print('%d passed, %d failed' % (passed, failed) + (', %d skipped' % skipped if skipped else ''))
sys.exit(1 if failed else 0)
