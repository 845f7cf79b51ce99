#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""README.md's lists of fuzzers against the fuzz targets meson builds.

    check-fuzzers.py README.md FUZZ-MESON.BUILD [OTHER-MESON.BUILD...]

Every executable('fuzz-NAME', ...) of the meson.build files given must be named in README's
"The fuzzers and what they read:" paragraph ("`NAME` (what it reads)"), and none that meson does
not build; the longer-run example's "f=... # or ..." list must name exactly those of the first
file (tests/fuzz/, which that command line runs), each of which its fuzzers list must run. Prints
what disagrees and exits 1, or exits 0.
"""

import re
import sys

errors = []


def targets(path):
    with open(path) as f:
        text = f.read()
    return text, set(re.findall(r"\bexecutable\(\s*'fuzz-([a-z0-9-]+)'", text))


def main():
    readme_path, fuzz_meson, *others = sys.argv[1:]
    with open(readme_path) as f:
        readme = f.read()
    fuzz_text, fuzz = targets(fuzz_meson)
    built = set(fuzz)
    for path in others:
        built |= targets(path)[1]
    if not fuzz:
        errors.append(f"{fuzz_meson}: no executable('fuzz-...') found (has its form changed?)")

    # The fuzz suite runs what the fuzzers list holds: a target built and never run is no fuzzer.
    run = set(re.findall(r"\bfuzzers \+= \[\['([a-z0-9-]+)'", fuzz_text))
    for name in sorted(fuzz - run):
        errors.append(f"{fuzz_meson}: fuzz-{name} is built but not in the fuzzers list (the fuzz suite does not run it)")

    m = re.search(r"The fuzzers and what they read:(.*?)\n\n", readme, re.S)
    if not m:
        errors.append(f"{readme_path}: no paragraph 'The fuzzers and what they read:'")
    else:
        named = set(re.findall(r"`([a-z0-9-]+)`\s+\(", m.group(1)))
        for name in sorted(built - named):
            errors.append(f"{readme_path}: 'The fuzzers and what they read' does not name `{name}` (fuzz-{name})")
        for name in sorted(named - built):
            errors.append(f"{readme_path}: 'The fuzzers and what they read' names `{name}`, which meson does not build")

    m = re.search(r"^f=([a-z0-9-]+) +# or (.*)$", readme, re.M)
    if not m:
        errors.append(f"{readme_path}: no 'f=NAME    # or ...' line in the longer run's example")
    else:
        listed = [m.group(1)] + [n.strip() for n in m.group(2).split(",")]
        for name in sorted(fuzz - set(listed)):
            errors.append(f"{readme_path}: the longer run's 'f=' list does not name {name} (tests/fuzz/fuzz-{name})")
        for name in sorted(set(listed) - fuzz):
            errors.append(f"{readme_path}: the longer run's 'f=' list names {name}, which {fuzz_meson} does not build")

    for e in errors:
        print(e, file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
