#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""json_raw_array_get() (proto/json-raw.c) takes an array's json-c userdata for its own after a
magic it reads from it: safe only while nothing else sets userdata on a json-c object. Fails if a
source file other than json-raw.c calls json_object_set_userdata(), or json_object_set_serializer()
with userdata (json-escape.c's passes NULL)."""

import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1])
bad = []
for path in sorted(root.glob('**/*.[ch]')):
    rel = path.relative_to(root).as_posix()
    if rel.startswith(('build', 'tests/')) or rel == 'proto/json-raw.c':
        continue
    text = path.read_text(errors='replace')
    for m in re.finditer(r'json_object_set_userdata\s*\(|json_object_set_serializer\s*\(([^;]*)\)\s*;', text):
        args = m.group(1)
        if args is not None and re.fullmatch(r'[^,]+,[^,]+,\s*NULL\s*,\s*NULL\s*', args):
            continue
        line = text.count('\n', 0, m.start()) + 1
        bad.append(f'{rel}:{line}: {m.group(0).strip()}')
if bad:
    print('json-c userdata set outside proto/json-raw.c (json_raw_array_get() would misread it):')
    print('\n'.join(bad))
    sys.exit(1)
print('only proto/json-raw.c sets json-c userdata')
