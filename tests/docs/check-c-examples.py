#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The C a VMM author copies from the documentation builds as it is, on <tsm.h> alone.

    check-c-examples.py example  CC LIBTSM.SO TSM.H SOURCE [CFLAGS...]
    check-c-examples.py snippets CC TSM.H DOC...

example: SOURCE (client/libtsm/examples/vmm-libtsm.c), copied to a directory of its own, is
compiled as strict C11 (-pedantic, warnings as errors) with only a copy of TSM.H on the
include path, and linked to LIBTSM.SO (-L its directory, -l its name): no header of the tree
can be reached, quoted or not.
snippets: every C snippet of each DOC (```c blocks of Markdown, .EX/.EE blocks of a man page)
is a translation unit of its own that compiles the same way (-fsyntax-only; POSIX declared, as
a compiler's default dialect has it); each DOC must have one at least.
Prints what fails and exits 1, or exits 0.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile

STRICT = ["-std=c11", "-pedantic", "-Wall", "-Wextra", "-Werror"]

# Its roff helpers (line_text(), unescape()).
spec = importlib.util.spec_from_file_location("check_man",
                                              os.path.join(os.path.dirname(__file__), "check-man.py"))
check_man = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_man)

errors = []


def public_include(tmp, header):
    inc = os.path.join(tmp, "include")
    os.mkdir(inc)
    shutil.copy(header, os.path.join(inc, "tsm.h"))
    return inc


def compile_(cmd, what):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        errors.append(f"{what} does not compile ({' '.join(cmd)}):\n{p.stderr.rstrip()}")


def check_example(cc, library, header, source, *cflags):
    with tempfile.TemporaryDirectory(prefix="check-c-examples-") as tmp:
        inc = public_include(tmp, header)
        src = os.path.join(tmp, "src")
        os.mkdir(src)
        copy = os.path.join(src, os.path.basename(source))
        shutil.copy(source, copy)
        name = re.match(r"lib(.+?)\.so", os.path.basename(library)).group(1)
        compile_([cc, *STRICT, *cflags, "-I", inc, "-o", os.path.join(tmp, "a.out"), copy,
                  "-L", os.path.dirname(library), "-l" + name], source)


def markdown_snippets(text):
    """[(line, code)] of the ```c blocks."""
    out, lines, start = [], text.split("\n"), None
    for i, line in enumerate(lines):
        if start is None and line.strip() == "```c":
            start = i + 1
        elif start is not None and line.strip() == "```":
            out.append((start + 1, "\n".join(lines[start:i]) + "\n"))
            start = None
    return out


def man_snippets(text):
    """[(line, code)] of the .EX/.EE blocks, roff escapes undone."""
    out, lines, start = [], text.split("\n"), None
    for i, line in enumerate(lines):
        if start is None and line.startswith(".EX"):
            start = i + 1
        elif start is not None and line.startswith(".EE"):
            code = []
            for raw in lines[start:i]:
                t = check_man.line_text(raw)
                if t is not None:
                    code.append(check_man.unescape(t))
            out.append((start + 1, "\n".join(code) + "\n"))
            start = None
    return out


def check_snippets(cc, header, *docs):
    with tempfile.TemporaryDirectory(prefix="check-c-examples-") as tmp:
        inc = public_include(tmp, header)
        for doc in docs:
            with open(doc) as f:
                text = f.read()
            snippets = markdown_snippets(text) if doc.endswith(".md") else man_snippets(text)
            if not snippets:
                errors.append(f"{doc}: no C snippet found")
            for line, code in snippets:
                path = os.path.join(tmp, f"snippet-{line}.c")
                with open(path, "w") as f:
                    f.write(code)
                compile_([cc, *STRICT, "-D_POSIX_C_SOURCE=200809L", "-fsyntax-only", "-I", inc, path],
                         f"{doc}:{line}: the snippet")


def main(argv):
    if len(argv) >= 6 and argv[1] == "example":
        check_example(*argv[2:])
    elif len(argv) >= 5 and argv[1] == "snippets":
        check_snippets(*argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    for e in errors:
        print(e, file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main(sys.argv)
