#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""run-fuzzer.py against a stand-in fuzzer that talks as libFuzzer does.

    test-run-fuzzer.py RUN-FUZZER.PY

A fuzz test whose seed corpus is missing, empty, or not read must fail, not fuzz random input
for its 10 seconds and pass; one that read its seeds passes, and the fuzzer's own failure stays
a failure. Runs in every build (no libFuzzer needed).
"""

import os
import subprocess
import sys
import tempfile

run_fuzzer = sys.argv[1]
results = []

# The stand-in: for each directory after the first two arguments' options, what libFuzzer says
# of it; $FAKE_FOUND overrides the count it says it found, $FAKE_READ the seed files it read
# ("none": says nothing of them), $FAKE_STATUS its exit status; with $FAKE_SILENT it names no
# directory. It leaves a mark that it ran.
FAKE = r'''
import os, sys
dirs = [a for a in sys.argv[1:] if not a.startswith('-')]
open(os.environ['FAKE_MARK'], 'w').close()
total = 0
for d in dirs:
    n = sum(len(f) for _, _, f in os.walk(d)) if os.path.isdir(d) else 0
    n = int(os.environ.get('FAKE_FOUND', n)) if d != dirs[0] else n
    total += n
    if 'FAKE_SILENT' not in os.environ:
        print('INFO: %8d files found in %s' % (n, d))
read = os.environ.get('FAKE_READ', str(total))
if read == 'none':
    print('INFO: A corpus is not provided, starting from an empty corpus')
else:
    print('INFO: seed corpus: files: %s min: 1b max: 3b total: 5b rss: 26Mb' % read)
print('Done 10 runs in 0 second(s)')
sys.exit(int(os.environ.get('FAKE_STATUS', '0')))
'''


def check(name, root, seeds, status, ran=True, env=None, message=None):
    fake = os.path.join(root, 'fake-fuzzer')
    mark = os.path.join(root, 'ran')
    if os.path.exists(mark):
        os.unlink(mark)
    e = dict(os.environ, FAKE_MARK=mark, **(env or {}))
    p = subprocess.run([sys.executable, run_fuzzer, fake, '-max_total_time=10', '-create_missing_dirs=1',
                        os.path.join(root, 'out')] + seeds, capture_output=True, text=True, env=e)
    ok = (p.returncode == status and os.path.exists(mark) == ran and
          (message is None or message in p.stderr))
    results.append(ok)
    print('%s %d - %s' % ('ok' if ok else 'not ok', len(results), name))
    if not ok:
        print('# wanted exit %d, ran %s, %r; got exit %d, ran %s' %
              (status, ran, message, p.returncode, os.path.exists(mark)))
        for l in (p.stdout + p.stderr).splitlines():
            print('#   ' + l)


with tempfile.TemporaryDirectory() as root:
    with open(os.path.join(root, 'fake-fuzzer'), 'w') as f:
        f.write('#!%s\n%s' % (sys.executable, FAKE))
    os.chmod(os.path.join(root, 'fake-fuzzer'), 0o755)
    seeds = os.path.join(root, 'seeds')
    os.makedirs(os.path.join(seeds, 'sub'))
    for name in ('a', 'sub/b'):
        with open(os.path.join(seeds, name), 'w') as f:
            f.write(name)
    more = os.path.join(root, 'more')
    os.makedirs(more)
    with open(os.path.join(more, 'c'), 'w') as f:
        f.write('c')
    empty = os.path.join(root, 'empty')
    os.makedirs(os.path.join(empty, 'only-a-directory'))

    check('seeds read: passes', root, [seeds, more], 0)
    check('the fuzzer failing fails', root, [seeds], 1, env={'FAKE_STATUS': '1'})
    check('an empty seed corpus fails before the run', root, [seeds, empty], 1, ran=False,
          message='holds no file')
    check('a missing seed corpus fails before the run', root, [os.path.join(root, 'renamed')], 1, ran=False,
          message='is not a directory')
    check('no seed corpus fails before the run', root, [], 1, ran=False, message='no seed corpus given')
    check('a seed corpus the fuzzer found nothing in fails', root, [seeds], 1, env={'FAKE_FOUND': '0'},
          message='found no file in seed corpus')
    check('a seed corpus named with a trailing slash is the one the fuzzer names', root, [seeds + '/'], 0)
    check('a seed corpus the fuzzer did not name fails', root, [seeds], 1, env={'FAKE_SILENT': '1'},
          message='did not say it read seed corpus')
    check('no seed input read fails', root, [seeds], 1, env={'FAKE_READ': '0'}, message='files: 0')
    check('a fuzzer starting from an empty corpus fails', root, [seeds], 1, env={'FAKE_READ': 'none'},
          message='read no seed input')

print('1..%d' % len(results))
sys.exit(0 if all(results) else 1)
