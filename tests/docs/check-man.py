#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The man pages against the code they document.

    check-man.py config  DAEMON-CONFIG.C TSMD.CONF.5 TSMD
    check-man.py policy  POLICY.C POLICY-PARSE.C TSMD-POLICY.CONF.5
    check-man.py tsmd    TSMD.C TSMD.8
    check-man.py tsmctl  TSMCTL TSMCTL.8
    check-man.py libtsm  TSM.H LIBTSM.3
    check-man.py render  PAGE...

Each prints what disagrees and exits 1, or exits 0; render exits 77 (skipped) without groff.
The pages follow the conventions their opening comments state, which is what is parsed here:
.SH/.SS headings, and .TP/.TQ tags ('.B Key=', '.BI \\-\\-option= ARG', '.B command'). A page
given is the one meson configured (configure_file()): its paths are those tsmd was built with.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

errors = []


def fail(msg):
    errors.append(msg)


def finish():
    for e in errors:
        print(e, file=sys.stderr)
    sys.exit(1 if errors else 0)


# ---- roff -----------------------------------------------------------------------------------

ESCAPES = {r"\-": "-", r"\(lq": '"', r"\(rq": '"', r"\(aq": "'", r"\(bu": "*", r"\(em": "--",
           r"\e": "\\", r"\&": "", r"\ ": " ", r"\|": "", r"\^": ""}
FONT_MACROS = {"B", "I", "SM", "SB", "BI", "BR", "IB", "IR", "RB", "RI"}


def unescape(s):
    s = re.sub(r"\\f(\[[A-Z]*\]|\(..|.)", "", s)
    for k, v in ESCAPES.items():
        s = s.replace(k, v)
    return s


def macro_args(rest):
    """A request's arguments, as roff splits them: spaces, or "quoted" ("" is a quote)."""
    args, i = [], 0
    while i < len(rest):
        if rest[i] == " ":
            i += 1
        elif rest[i] == '"':
            j, arg = i + 1, ""
            while j < len(rest):
                if rest[j] == '"' and rest[j + 1:j + 2] == '"':
                    arg, j = arg + '"', j + 2
                elif rest[j] == '"':
                    j += 1
                    break
                else:
                    arg, j = arg + rest[j], j + 1
            args.append(arg)
            i = j
        else:
            j = rest.find(" ", i)
            j = len(rest) if j < 0 else j
            args.append(rest[i:j])
            i = j
    return args


def line_text(line):
    """The raw (still escaped) text a line prints, or None for a request that prints none."""
    if not line.startswith((".", "'")):
        return line
    name, _, rest = line[1:].partition(" ")
    if name in FONT_MACROS:
        return (" " if len(name) == 1 or name in ("SM", "SB") else "").join(macro_args(rest))
    return None


class Entry:
    """A .TP item: its tag, the headings it is under, and its paragraph (raw and as text)."""

    def __init__(self, sh, ss, tag):
        self.sh, self.ss, self.tag, self.raw = sh, ss, tag, []

    @property
    def body(self):
        return " ".join(unescape(r) for r in self.raw)


def parse_page(path):
    """(entries, {SH heading: its text lines}) of a man page."""
    with open(path, encoding="ascii", errors="replace") as f:
        lines = f.read().split("\n")
    entries, sections = [], {}
    sh = ss = None
    expect_tag, current = False, None
    for line in lines:
        if line.startswith(('.\\"', "'\\\"")) or line == ".":
            continue
        req = line[1:].split(" ", 1)[0] if line.startswith(".") else None
        if req == "SH":
            sh, ss, current = unescape(" ".join(macro_args(line[4:]))), None, None
            sections.setdefault(sh, [])
            continue
        if req == "SS":
            ss, current = unescape(" ".join(macro_args(line[4:]))), None
            continue
        if req in ("TP", "TQ"):
            expect_tag, current = True, None
            continue
        text = line_text(line)
        if expect_tag:
            expect_tag = False
            current = Entry(sh, ss, unescape(text or ""))
            entries.append(current)
            continue
        if req in ("PP", "LP", "P", "IP", "RS", "RE", "EX", "EE"):
            current = None
        if text is None:
            continue
        if sh is not None:
            sections[sh].append(unescape(text))
        if current:
            current.raw.append(text)
    return entries, sections


def option_names(text):
    """'-h, --help' -> {'-h', '--help'}; '--socket=PATH' -> {'--socket='}."""
    return {m.group(1) + (m.group(2) and "=")
            for m in re.finditer(r"(?<![\w-])(--?[a-z][a-z0-9-]*)(=?)", text)}


def c_block(text, start):
    """The text of a C initialiser from the line holding start to its closing '};'."""
    i = text.index(start)
    return text[i:text.index("};", i)]


# ---- tsmd.conf(5) against daemon-config.c and tsmd itself ------------------------------------

NUMERIC = {"CONFIG_UNSIGNED", "CONFIG_SIZE_T", "CONFIG_SIZE", "CONFIG_UINT64"}
UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def config_table(path):
    """[(section, key, type, at_start)] from config_items[], in order."""
    with open(path) as f:
        block = c_block(f.read(), "config_items[] = {")
    items = []
    for m in re.finditer(r"\b(ITEM|START_ITEM|PATH_ITEM|CHECKED_PATH_ITEM)\(", block):
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(block[i], 0)
            i += 1
        args = [a.strip() for a in re.split(r",(?![^(]*\))", block[m.end():i - 1])]
        section, key = args[0].strip('"'), args[1].strip('"')
        if m.group(1) in ("PATH_ITEM", "CHECKED_PATH_ITEM"):
            # (section, key, field, default, at_start[, host check])
            items.append((section, key, "CONFIG_PATH", args[4] == "true"))
        else:
            items.append((section, key, args[2], m.group(1) == "START_ITEM"))
    if not items:
        fail(f"{path}: no config_items[] entries found (has the table's form changed?)")
    return items


def run_tsmd(tsmd, text, option):
    with tempfile.TemporaryDirectory() as d:
        conf = os.path.join(d, "tsmd.conf")
        with open(conf, "w") as f:
            f.write(text)
        os.chmod(conf, 0o644)
        p = subprocess.run([tsmd, f"--config={conf}", option], capture_output=True, text=True, timeout=60)
    return p.stdout, p.stderr


def dump_defaults(tsmd):
    """{(section, key): value} of tsmd --dump-config with an empty tsmd.conf (the policy it then
    names may not load here: the configuration is printed before that is checked)."""
    out, err = run_tsmd(tsmd, "", "--dump-config")
    values, section = {}, None
    for line in out.split("\n"):
        if line.startswith("#"):
            break
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line:
            k, _, v = line.partition("=")
            values[(section, k)] = v
    if not values:
        fail(f"tsmd --dump-config printed no configuration: {err.strip()}")
    return values


def tsmd_range(tsmd, section, key):
    """'LOW to HIGH' as tsmd's error for an out-of-range value names it."""
    _, err = run_tsmd(tsmd, f"[{section}]\n{key}=18446744073709551615\n", "--check-config")
    m = re.search(r"value out of range for " + re.escape(key) + r"= \((\S+ to \S+)\)", err)
    if not m:
        fail(f"[{section}] {key}=: tsmd did not name a range for an out-of-range value: {err.strip()}")
        return None
    return m.group(1)


def check_config(source, page, tsmd):
    table = config_table(source)
    entries, _ = parse_page(page)
    documented = {}
    for e in entries:
        m = re.match(r"(\w+)=", e.tag)
        sec = re.fullmatch(r"\[(\w+)\]", e.ss or "")
        if not m or not sec or e.sh != "DESCRIPTION":
            continue
        k = (sec.group(1), m.group(1))
        if k in documented:
            fail(f"{page}: [{k[0]}] {k[1]}= is documented twice")
        documented[k] = e

    known = {(s, k) for s, k, _, _ in table}
    for s, k in sorted(set(documented) - known):
        fail(f"{page}: documents [{s}] {k}=, which daemon-config.c's table does not have")
    defaults = dump_defaults(tsmd)
    for section, key, ctype, at_start in table:
        e = documented.get((section, key))
        name = f"[{section}] {key}="
        if not e:
            fail(f"{page}: does not document {name} (daemon-config.c's table has it)")
            continue
        raw = " ".join(e.raw)

        # The default, as --dump-config prints it: bytes for sizes, paths as built.
        m = re.search(r"Default: (?:(empty)\b|\\fB(.*?)\\f[RP])", raw)
        if not m:
            fail(f"{page}: {name} states no 'Default: \\fBvalue\\fR' (or 'Default: empty')")
        elif (section, key) in defaults:
            doc = "" if m.group(1) else unescape(m.group(2))
            actual = defaults[(section, key)]
            u = re.fullmatch(r"(\d+)([KMG])", doc)
            if ctype in ("CONFIG_SIZE_T", "CONFIG_SIZE") and u:
                doc = str(int(u.group(1)) * UNITS[u.group(2)])
            if doc != actual:
                fail(f"{page}: {name} default is '{doc}', tsmd --dump-config says '{actual}'")
        else:
            fail(f"tsmd --dump-config does not print {name}")

        m = re.search(r"Range: (\S+ to \S+?)\.", e.body)
        if ctype in NUMERIC:
            want = tsmd_range(tsmd, section, key)
            if want and not m:
                fail(f"{page}: {name} states no 'Range: {want}.'")
            elif want and m.group(1) != want:
                fail(f"{page}: {name} range is '{m.group(1)}', tsmd says '{want}'")
        elif m:
            fail(f"{page}: {name} states a range, but it is not a number")

        if at_start != ("Read at start." in e.body):
            fail(f"{page}: {name} " + ("is read at start only (START_ITEM), the page does not say 'Read at start.'"
                                       if at_start else "is applied by a reload, but the page says 'Read at start.'"))


# ---- tsmd-policy.conf(5) against the policy parser ----------------------------------------------

def check_policy(policy_c, parse_c, page):
    with open(policy_c) as f:
        keys = set(re.findall(r'\[POLICY_KEY_\w+\] = "(\w+)"', c_block(f.read(), "policy_key_table[")))
    with open(parse_c) as f:
        text = f.read()
        i = text.index("static int resolve_section(")
        parser = text[i:text.index("\n}\n", i)]
    sections = set(re.findall(r'streq\(name, "(\w+)"\)', parser))
    sections |= {p + "NAME" for p in re.findall(r'strneq\(name, "(\w+:)"', parser)}
    if not keys or not sections:
        fail(f"{policy_c}, {parse_c}: no policy keys or sections found (has the code's form changed?)")

    entries, _ = parse_page(page)
    doc_sections, doc_keys = set(), set()
    for e in entries:
        sec = re.fullmatch(r"\[([\w:]+)\]", e.ss or "")
        m = re.match(r"(\w+)=", e.tag)
        if sec and m:
            doc_sections.add(sec.group(1))
            doc_keys.add(m.group(1))
    for s in sorted(sections - doc_sections):
        fail(f"{page}: does not document section [{s}]")
    for s in sorted(doc_sections - sections):
        fail(f"{page}: documents section [{s}], which the policy parser does not know")
    for k in sorted(keys - doc_keys):
        fail(f"{page}: does not document {k}= (policy.c's key table has it)")
    for k in sorted(doc_keys - keys):
        fail(f"{page}: documents {k}=, which policy.c's key table does not have")


# ---- tsmd(8) against tsmd's getopt table ------------------------------------------------------

def check_tsmd(source, page):
    with open(source) as f:
        block = c_block(f.read(), "static const struct option options[]")
    accepted = {"--" + n + ("=" if a == "required" else "")
                for n, a in re.findall(r'\{ "([\w-]+)", (\w+)_argument', block)}
    if not accepted:
        fail(f"{source}: no getopt options found (has the table's form changed?)")
    entries, _ = parse_page(page)
    documented = set()
    for e in entries:
        if e.sh == "OPTIONS":
            documented |= {o for o in option_names(e.tag) if o.startswith("--")}
    for o in sorted(accepted - documented):
        fail(f"{page}: does not document {o} (tsmd.c's getopt table has it)")
    for o in sorted(documented - accepted):
        fail(f"{page}: documents {o}, which tsmd.c's getopt table does not have")


# ---- tsmctl(8) against tsmctl --help ----------------------------------------------------------

def run(*cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        fail(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def check_tsmctl(tsmctl, page):
    help_text = run(tsmctl, "--help")
    commands, options, block = {}, set(), None
    for line in help_text.split("\n"):
        if line in ("Commands:", "Options:"):
            block = line
        elif block == "Commands:" and line.startswith("  ") and line.strip():
            commands[line.split()[0]] = None
        elif block == "Options:":
            m = re.match(r"\s+((?:-\w\s+)?--[\w-]+=?\S*)", line)
            if m:
                options |= option_names(m.group(1))
    if not commands or not options:
        fail(f"tsmctl --help lists no commands or options:\n{help_text}")
    for c in commands:
        usage = run(tsmctl, c, "--help").split("\n")[0]
        prefix = f"Usage: tsmctl {c}"
        if not usage.startswith(prefix):
            fail(f"tsmctl {c} --help: no usage line: {usage}")
            continue
        usage = usage[len(prefix):]
        opts = re.findall(r"\[(--[^\]]*)\]", usage)
        commands[c] = (" ".join(re.sub(r"\[--[^\]]*\]", "", usage).split()),
                       set().union(*(option_names(o) for o in opts)) if opts else set())

    entries, _ = parse_page(page)
    doc_commands, doc_options, last = {}, set(), None
    for e in entries:
        if e.sh == "OPTIONS":
            doc_options |= option_names(e.tag)
        elif e.sh == "COMMANDS":
            if e.tag.startswith("-"):
                if last:
                    doc_commands[last][1].update(option_names(e.tag))
            else:
                last = e.tag.split()[0]
                doc_commands[last] = (" ".join(e.tag.split()[1:]), set())
    for c in commands:
        if c not in doc_commands:
            fail(f"{page}: does not document the command '{c}' (tsmctl --help lists it)")
            continue
        if commands[c] is None:
            continue
        args, opts = commands[c]
        if doc_commands[c][0] != args:
            fail(f"{page}: '{c}' takes '{doc_commands[c][0]}', tsmctl {c} --help says '{args}'")
        for o in sorted(opts - doc_commands[c][1]):
            fail(f"{page}: does not document '{c} {o}' (tsmctl {c} --help lists it)")
        for o in sorted(doc_commands[c][1] - opts):
            fail(f"{page}: documents '{c} {o}', which tsmctl {c} --help does not list")
    for c in sorted(set(doc_commands) - set(commands)):
        fail(f"{page}: documents the command '{c}', which tsmctl --help does not list")
    for o in sorted(options - doc_options):
        fail(f"{page}: does not document {o} (tsmctl --help lists it)")
    for o in sorted(doc_options - options):
        fail(f"{page}: documents {o}, which tsmctl --help does not list")


# ---- libtsm(3) against tsm.h ------------------------------------------------------------------

def prototypes(text):
    """{name: 'type name(params);'} with whitespace collapsed."""
    flat = " ".join(text.split())
    flat = flat.replace("( ", "(").replace(" )", ")").replace(" ,", ",").replace(" ;", ";")
    return {m.group(2): m.group(1)
            for m in re.finditer(r"((?:const )?\w+ \**(tsm_\w+)\([^;]*\);)", flat)}


def check_libtsm(header, page):
    with open(header) as f:
        text = re.sub(r"/\*.*?\*/", " ", f.read(), flags=re.S)
    text = re.sub(r"^#.*$", " ", text, flags=re.M)
    declared = prototypes(text)
    if not declared:
        fail(f"{header}: no tsm_* declarations found")
    _, sections = parse_page(page)
    documented = prototypes("\n".join(sections.get("SYNOPSIS", [])))
    for n in sorted(set(declared) - set(documented)):
        fail(f"{page}: SYNOPSIS lacks {n}() (tsm.h declares it)")
    for n in sorted(set(documented) - set(declared)):
        fail(f"{page}: SYNOPSIS has {n}(), which tsm.h does not declare")
    for n in sorted(set(declared) & set(documented)):
        if declared[n] != documented[n]:
            fail(f"{page}: SYNOPSIS has '{documented[n]}', tsm.h declares '{declared[n]}'")


# ---- rendering --------------------------------------------------------------------------------

def check_render(pages):
    groff = shutil.which("groff")
    if not groff:
        print("skipped: groff is not installed (Debian: groff-base)", file=sys.stderr)
        sys.exit(77)
    for page in pages:
        with open(page, "rb") as f:
            data = f.read()
        bad = [i + 1 for i, line in enumerate(data.split(b"\n")) if any(b > 127 for b in line)]
        if bad:
            fail(f"{page}: non-ASCII bytes on lines {bad} (use roff escapes)")
        left = sorted(set(re.findall(rb"@[a-z]+dir@", data)))
        if left:
            fail(f"{page}: {b', '.join(left).decode()} not filled in: install the page with configure_file()"
                 " and install_dirs (meson.build), as tsmd.8 is")
        p = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", page], capture_output=True, text=True,
                           timeout=60)
        if p.returncode != 0 or p.stderr:
            fail(f"{page}: groff -man -Tutf8 -ww -z (exit {p.returncode}):\n{p.stderr.rstrip()}")


def main(argv):
    checks = {"config": (check_config, 3), "policy": (check_policy, 3), "tsmd": (check_tsmd, 2),
              "tsmctl": (check_tsmctl, 2), "libtsm": (check_libtsm, 2)}
    if len(argv) >= 3 and argv[1] == "render":
        check_render(argv[2:])
    elif len(argv) >= 2 and argv[1] in checks and len(argv) - 2 == checks[argv[1]][1]:
        checks[argv[1]][0](*argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    finish()


if __name__ == "__main__":
    main(sys.argv)
