#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# "meson install" into a DESTDIR puts the shipped configuration in /usr/share/tsmd and copies it
# into /etc/tsmd; a second install over an admin's edits (an upgrade) keeps them, puts back a
# file that is gone and leaves a symlink alone. A build set up for other directories installs
# pages, docs, configuration and units that name those, not /usr's. Every installed file has
# its install tag: --tags runtime installs the binaries and units, --tags man the pages alone.
#   install-config.sh MESON BUILD-ROOT SOURCE-ROOT
set -u
meson=$1 build=$2 src=$3
umask 022
tmp=$(mktemp -d /tmp/tsmd-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
n=0 failed=0

check() {
    local what=$1; shift
    n=$((n + 1))
    if "$@"; then
        echo "ok $n - $what"
    else
        echo "not ok $n - $what"
        failed=1
    fi
}
install_into_root() {
    out=$("$meson" install -C "$build" --destdir "$root" --no-rebuild 2>&1) || { echo "$out" | sed 's/^/# /'; echo "Bail out! meson install failed"; exit 1; }
}

install_into_root
# The shipped files as meson configured them (their comments name the directories as built).
shipped_tsmd_conf=$build/systemd/tsmd.conf shipped_policy_conf=$build/daemon/policy/policy.conf.example
check "the shipped tsmd.conf is in /usr/share/tsmd" cmp -s "$shipped_tsmd_conf" "$root/usr/share/tsmd/tsmd.conf"
check "the shipped policy.conf is in /usr/share/tsmd" cmp -s "$shipped_policy_conf" "$root/usr/share/tsmd/policy.conf"
check "a first install puts tsmd.conf in /etc/tsmd" cmp -s "$shipped_tsmd_conf" "$root/etc/tsmd/tsmd.conf"
check "a first install puts policy.conf in /etc/tsmd" cmp -s "$shipped_policy_conf" "$root/etc/tsmd/policy.conf"
check "mode 0644, as tsmd trusts a policy file" test "$(stat -c %a "$root/etc/tsmd/policy.conf")" = 644
# The shipped policy.conf and tsmd.conf send the admin to it.
check "POLICY.md is in /usr/share/doc/tsmd" cmp -s "$build/daemon/policy/POLICY.md" "$root/usr/share/doc/tsmd/POLICY.md"
check "policy.conf names where POLICY.md is" grep -q /usr/share/doc/tsmd/POLICY.md "$root/etc/tsmd/policy.conf"
check "tsmd.conf names where POLICY.md is" grep -q /usr/share/doc/tsmd/POLICY.md "$root/etc/tsmd/tsmd.conf"
# Debian's libtsm-dev and libtsm4 (the terminal-emulator state machine) own these names: an
# install beside them must not collide, so libtsm is libtsmd.so, libtsmd.pc and <tsmd/tsm.h>.
no_collision() { ! find "$root" \( -name 'libtsm.so*' -o -name libtsm.pc -o -name libtsm.h -o -name libtsm.a -o -path '*/cmake/libtsm' \) | grep -q .; }
has_pc() { find "$root" -path '*/pkgconfig/libtsmd.pc' | grep -q .; }
check "nothing is installed where Debian's libtsm-dev puts its files" no_collision
check "libtsm's header is <tsmd/tsm.h>" test -f "$root/usr/include/tsmd/tsm.h"
check "libtsm's pkg-config file is libtsmd.pc" has_pc

# Every file installed has its meson install tag (meson install --tags): what tsmd needs to run
# is runtime, its binaries and units alike, and a --tags man install puts the pages alone. Each
# page is the build's, configured (install_dirs), none the source's as it is.
plan() { "$meson" introspect "$build" --install-plan | python3 -c "$@"; }
untagged=$(plan 'import json, sys
for files in json.load(sys.stdin).values():
    for info in files.values():
        if not info.get("tag"): print(info["destination"])')
check "every installed file has an install tag" test -z "$untagged"
[ -z "$untagged" ] || echo "$untagged" | sed 's/^/# untagged: /'
unconfigured=$(plan 'import json, os, sys
for src in json.load(sys.stdin).get("man", {}):
    if not os.path.realpath(src).startswith(os.path.realpath(sys.argv[1]) + "/"): print(src)' "$build")
check "every installed man page is configured by the build" test -z "$unconfigured"
[ -z "$unconfigured" ] || echo "$unconfigured" | sed 's/^/# not configured: /'
tagged=$tmp/tagged
install_tags() {
    rm -rf "$tagged"
    out=$("$meson" install -C "$build" --destdir "$tagged" --no-rebuild --tags "$1" 2>&1) ||
        { echo "$out" | sed 's/^/# /'; echo "Bail out! meson install --tags $1 failed"; exit 1; }
}
# "installed PATTERN": a file or link whose path ends so, in the tagged install.
installed() { find "$tagged" \( -type f -o -type l \) -path "*/$1" | grep -q .; }
install_tags runtime
for f in sbin/tsmd libexec/tsmd-worker bin/tsmctl 'libtsmd.so.0' system/tsmd.service system/tsmd.socket \
         system/tsmd-admin.socket sysusers.d/tsmd.conf tmpfiles.d/tsmd.conf completions/tsmctl; do
    check "--tags runtime installs $f" installed "$f"
done
for f in 'man8/*' include/tsmd/tsm.h 'pkgconfig/libtsmd.pc' libtsmd.so share/tsmd/tsmd.conf doc/tsmd/POLICY.md \
         tsmd/policy.conf; do
    check "--tags runtime does not install $f" eval '! installed "$f"'
done
install_tags man
for f in man8/tsmd.8 man8/tsmctl.8 man5/tsmd.conf.5 man5/tsmd-policy.conf.5 man3/libtsm.3; do
    check "--tags man installs $f" installed "$f"
done
not_man=$(find "$tagged" \( -type f -o -type l \) ! -path '*/man/man[0-9]/*')
check "--tags man installs the pages alone" test -z "$not_man"
[ -z "$not_man" ] || echo "$not_man" | sed 's/^/# /'

# The admin's edits; a tsmd.conf that is a link to one kept elsewhere.
printf '[Client:vm]\nUsers=root\nDevices=*\nScopes=info\n' >>"$root/etc/tsmd/policy.conf"
cp "$root/etc/tsmd/policy.conf" "$tmp/policy.edited"
mv "$root/etc/tsmd/tsmd.conf" "$root/etc/tsmd/tsmd.conf.real"
ln -s tsmd.conf.real "$root/etc/tsmd/tsmd.conf"
install_into_root
check "a second install keeps the edited policy.conf" cmp -s "$tmp/policy.edited" "$root/etc/tsmd/policy.conf"
check "a second install leaves a symlinked tsmd.conf alone" test "$(readlink "$root/etc/tsmd/tsmd.conf")" = tsmd.conf.real

rm "$root/etc/tsmd/policy.conf"
rm "$root/etc/tsmd/tsmd.conf"
install_into_root
check "an install puts back a policy.conf that is gone" cmp -s "$shipped_policy_conf" "$root/etc/tsmd/policy.conf"
check "an install puts back a tsmd.conf that is gone" cmp -s "$shipped_tsmd_conf" "$root/etc/tsmd/tsmd.conf"

# A scratch --prefix= (no build needed to ask where what goes): everything under it, the units,
# sysusers.d and tmpfiles.d files included, and the unit and tmpfiles name its audit directory.
# Its configuration and state directories set apart, as --prefix=/usr/local has /usr/local/etc
# and /var/local, and named so that none holds /etc/tsmd or /var/log/tsmd.
pre=$tmp/prefix conf=$tmp/prefix/config state=$tmp/prefix/state
prefixed() {
    "$meson" introspect "$tmp/prefix-build" --installed |
        python3 -c 'import json, sys; sys.exit(any(not p.startswith(sys.argv[1] + "/") for p in json.load(sys.stdin).values()))' "$pre"
}
out=$("$meson" setup "$tmp/prefix-build" "$src" --prefix="$pre" --sysconfdir=config --localstatedir=state 2>&1) ||
    { echo "$out" | sed 's/^/# /'; echo "Bail out! meson setup --prefix failed"; exit 1; }
check "a --prefix= install writes nothing outside the prefix" prefixed
check "the prefix's unit has its audit directory writable" grep -qx "ReadWritePaths=-$state/log/tsmd /run/tsmd /sys/devices" "$tmp/prefix-build/systemd/tsmd.service"
check "the prefix's tmpfiles.d file makes its audit directory" grep -q "^d $state/log/tsmd " "$tmp/prefix-build/systemd/tsmd.tmpfiles"

# What names a directory, installed from that build without building it (the tags): the man
# pages, POLICY.md, the shipped configuration (and its copy into the configuration directory).
dest=$tmp/dest
out=$("$meson" install -C "$tmp/prefix-build" --destdir "$dest" --no-rebuild --tags man,doc,config 2>&1) ||
    { echo "$out" | sed 's/^/# /'; echo "Bail out! meson install --tags man,doc,config failed"; exit 1; }
man=$dest$pre/share/man
# "FILE names TEXT": a fixed string, in the file as installed.
names() { grep -qF -- "$2" "$1"; }
check "tsmd.conf(5) names the configuration directory" names "$man/man5/tsmd.conf.5" "Default: \fB$conf/tsmd/policy.conf\fR."
check "tsmd.conf(5) names the audit directory" names "$man/man5/tsmd.conf.5" "Default: \fB$state/log/tsmd\fR."
check "tsmd.conf(5) names the shipped tsmd.conf" names "$man/man5/tsmd.conf.5" ".I $pre/share/tsmd/tsmd.conf"
check "tsmd(8) names tsmd.conf" names "$man/man8/tsmd.8" ".I $conf/tsmd/tsmd.conf"
check "tsmd(8) names the worker" names "$man/man8/tsmd.8" ".I $pre/libexec/tsmd\-worker"
check "tsmd(8) names the audit log" names "$man/man8/tsmd.8" ".I $state/log/tsmd/audit.log"
check "tsmd-policy.conf(5) names the drop-ins" names "$man/man5/tsmd-policy.conf.5" ".I $conf/tsmd/policy.d/*.conf"
check "libtsm(3) names the include directory" names "$man/man3/libtsm.3" "\-I$pre/include/tsmd"
check "POLICY.md names policy.conf" names "$dest$pre/share/doc/tsmd/POLICY.md" "| \`$conf/tsmd/policy.conf\` |"
check "the installed tsmd.conf names the policy's default" names "$dest$conf/tsmd/tsmd.conf" "#File=$conf/tsmd/policy.conf"
check "the installed tsmd.conf names the audit directory's default" names "$dest$conf/tsmd/tsmd.conf" "#Directory=$state/log/tsmd"
check "the installed tsmd.conf names where POLICY.md is" names "$dest$conf/tsmd/tsmd.conf" "$pre/share/doc/tsmd/POLICY.md"
check "the installed policy.conf names where POLICY.md is" names "$dest$conf/tsmd/policy.conf" "$pre/share/doc/tsmd/POLICY.md"
check "the installed policy.conf names the drop-ins" names "$dest$conf/tsmd/policy.conf" "tsmd reads $conf/tsmd/policy.d/*.conf"
# Nothing of it names a directory of the /usr install's (or one left unfilled), the units included.
usr_paths=$(grep -rnE -e '/etc/tsmd|/var/log/tsmd|/usr/(share|libexec|include|sbin|bin)/|@[a-z]+dir@' \
    "$dest" "$tmp/prefix-build/systemd/tsmd.service" "$tmp/prefix-build/systemd/tsmd.tmpfiles")
check "no installed page, doc, configuration or unit names the /usr install's directories" test -z "$usr_paths"
[ -z "$usr_paths" ] || echo "$usr_paths" | sed 's/^/# /'
echo "1..$n"
exit $failed
