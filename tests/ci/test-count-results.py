#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
""".ci/count-results.py against build directories made up here, as .ci/run leaves them.

    test-count-results.py COUNT-RESULTS.PY

The CI reads the last line ("N passed, N failed") and the exit status: a meson test killed
part way, a log cut short or a test meant to fail must not read as a success, or as a crash.
"""

import json
import os
import subprocess
import sys
import tempfile

count_results = sys.argv[1]
results = []


def make_build(root, name, tests, logged, status=None, tail=''):
    """A build directory whose list names tests, whose log has the entries logged (dicts or
    raw lines), then tail, and whose meson test exited status (None: no status file)."""
    build = os.path.join(root, name)
    os.makedirs(os.path.join(build, 'meson-logs'))
    if tests is not None:
        with open(os.path.join(build, 'ci-tests.list'), 'w') as f:
            f.write(''.join('tsmd / %s\n' % t for t in tests))
    with open(os.path.join(build, 'meson-logs', 'testlog.json'), 'w') as f:
        for e in logged:
            f.write((e if isinstance(e, str) else json.dumps(e)) + '\n')
        f.write(tail)
    if status is not None:
        with open(os.path.join(build, 'ci-test.status'), 'w') as f:
            f.write('%d\n' % status)
    return build


def entry(name, result, stdout=''):
    return {'name': 'tsmd / ' + name, 'result': result, 'stdout': stdout}


def check(name, builds, last_line, status):
    p = subprocess.run([sys.executable, count_results] + builds, capture_output=True, text=True)
    lines = p.stdout.splitlines()
    got_last = lines[-1] if lines else ''
    ok = got_last == last_line and p.returncode == status and not p.stderr
    results.append(ok)
    print('%s %d - %s' % ('ok' if ok else 'not ok', len(results), name))
    if not ok:
        print('# wanted last line %r, exit %d; got %r, exit %d' % (last_line, status, got_last, p.returncode))
        for l in (p.stdout + p.stderr).splitlines():
            print('#   ' + l)
    return lines


with tempfile.TemporaryDirectory() as root:
    tap_ok = 'ok 1 - a\nok 2 - b\n1..2\n'
    check('all passed', [make_build(root, 'all', ['a', 'b'],
                                    [entry('a', 'OK', tap_ok), entry('b', 'OK')], 0)],
          '3 passed, 0 failed', 0)

    # meson test killed after the first test: the second never ran.
    check('a listed test the log lacks fails', [make_build(root, 'killed', ['a', 'b'],
                                                           [entry('a', 'OK', tap_ok)], 137)],
          '2 passed, 2 failed', 1)
    check('a listed test the log lacks fails, meson test exiting 0 or not',
          [make_build(root, 'missing', ['a', 'b'], [entry('a', 'OK')], 0)],
          '1 passed, 1 failed', 1)

    check('a line cut short is one failure, not a crash',
          [make_build(root, 'cut', ['a', 'b'], [entry('a', 'OK')], 0,
                      tail=json.dumps(entry('b', 'OK'))[:20])],
          '1 passed, 2 failed', 1)

    lines = check('skips are reported before the last line',
                  [make_build(root, 'skips', ['a', 'b'],
                              [entry('a', 'OK', 'ok 1 - x\nok 2 - y # SKIP no TSM\n1..2\n'),
                               entry('b', 'SKIP')], 0)],
                  '1 passed, 0 failed', 0)
    results.append(lines[-2:-1] == ['2 skipped'])
    print('%s %d - the skips are counted on the line before the last' %
          ('ok' if results[-1] else 'not ok', len(results)))

    check('a TAP test expected to fail passes',
          [make_build(root, 'xfail', ['a'],
                      [entry('a', 'EXPECTEDFAIL', 'ok 1 - x\nnot ok 2 - y\n1..2\n')], 0)],
          '1 passed, 0 failed', 0)
    check('a test expected to fail that passed fails',
          [make_build(root, 'xpass', ['a'], [entry('a', 'UNEXPECTEDPASS', tap_ok)], 1)],
          '2 passed, 1 failed', 1)

    check('a meson test exiting other than 0 or 1 fails',
          [make_build(root, 'status', ['a'], [entry('a', 'OK')], 125)],
          '1 passed, 1 failed', 1)
    check('meson test exiting 1 with no failure logged fails',
          [make_build(root, 'status1', ['a'], [entry('a', 'OK')], 1)],
          '1 passed, 1 failed', 1)
    check('no exit status: meson test did not finish',
          [make_build(root, 'nostatus', ['a'], [entry('a', 'OK')])],
          '1 passed, 1 failed', 1)
    check('a build with no list of tests failed to build, the other still counts',
          [make_build(root, 'nobuild', None, []), make_build(root, 'built', ['a'], [entry('a', 'OK')], 0)],
          '1 passed, 1 failed', 1)
    check('a failing TAP line and a crash after it',
          [make_build(root, 'crash', ['a', 'b'],
                      [entry('a', 'FAIL', 'ok 1 - x\nnot ok 2 - y\n1..2\n'), entry('b', 'TIMEOUT')], 1)],
          '1 passed, 2 failed', 1)

print('1..%d' % len(results))
sys.exit(0 if all(results) else 1)
