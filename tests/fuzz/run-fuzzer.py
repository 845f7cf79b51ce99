#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Runs a libFuzzer target as a test, and fails it if it did not start from its seed corpus.

    run-fuzzer.py FUZZER [OPTION...] OUTPUT-CORPUS SEED-CORPUS...

The arguments after FUZZER are libFuzzer's own: options start with '-', the first directory is
where new inputs go (the build directory), the others are read-only seed corpora. A seed corpus
renamed or emptied would otherwise go unnoticed: -create_missing_dirs=1 makes a missing one (in
the source tree), and libFuzzer starts from random input. So before the run, each seed corpus
must be a directory holding a file; during it, libFuzzer must say it found files in each
("INFO: N files found in DIR") and read some ("INFO: seed corpus: files: N"). The fuzzer's
output is passed on; its exit status is ours, unless a check fails (1).
"""

import os
import re
import subprocess
import sys


def fail(message):
    print('run-fuzzer: %s' % message, file=sys.stderr, flush=True)
    sys.exit(1)


def n_files(path):
    """Regular files under path (libFuzzer reads a corpus directory recursively)."""
    return sum(1 for top, _, names in os.walk(path) for name in names
               if os.path.isfile(os.path.join(top, name)))


def main(argv):
    if len(argv) < 2:
        fail('usage: run-fuzzer.py FUZZER [OPTION...] OUTPUT-CORPUS SEED-CORPUS...')
    fuzzer, args = argv[1], argv[2:]
    dirs = [a for a in args if not a.startswith('-')]
    seeds = dirs[1:]
    if not seeds:
        fail('%s: no seed corpus given (the first directory takes new inputs)' % fuzzer)
    for d in seeds:
        if not os.path.isdir(d):
            fail('%s: seed corpus %s is not a directory' % (fuzzer, d))
        if n_files(d) == 0:
            fail('%s: seed corpus %s holds no file' % (fuzzer, d))

    found = {}
    read = None
    proc = subprocess.Popen([fuzzer] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for raw in proc.stdout:
        line = raw.decode('utf-8', 'replace')
        sys.stdout.write(line)
        m = re.match(r'INFO:\s+(\d+) files found in (.*)$', line.rstrip('\n'))
        if m:
            found[os.path.normpath(m.group(2))] = int(m.group(1))
        m = re.match(r'INFO: seed corpus: files: (\d+)\b', line)
        if m and read is None:
            read = int(m.group(1))
    sys.stdout.flush()
    status = proc.wait()

    for d in seeds:
        n = found.get(os.path.normpath(d))
        if n is None:
            fail('%s: libFuzzer did not say it read seed corpus %s' % (fuzzer, d))
        if n == 0:
            fail('%s: libFuzzer found no file in seed corpus %s' % (fuzzer, d))
    if read is None or read == 0:
        fail('%s: libFuzzer read no seed input (%s)' % (fuzzer, 'none said' if read is None else 'files: 0'))
    return status


if __name__ == '__main__':
    sys.exit(main(sys.argv))
