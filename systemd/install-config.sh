#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# meson's install script: copies each shipped configuration file (EXAMPLES-DIR, under /usr/share)
# into CONFIG-DIR (/etc/tsmd) where that file is missing, and never over one that is there, a
# symlink included: "meson install" of a new version must not undo an admin's edits. DESTDIR
# (a package's staging root) is respected.
#   install-config.sh EXAMPLES-DIR CONFIG-DIR FILE...
set -eu
examples=${DESTDIR:-}$1 config=${DESTDIR:-}$2
shift 2
install -d -m 0755 "$config"
for f in "$@"; do
    if [ -e "$config/$f" ] || [ -L "$config/$f" ]; then
        echo "Keeping $config/$f (the shipped one is $examples/$f)."
    else
        install -m 0644 "$examples/$f" "$config/$f"
        echo "Installed $config/$f."
    fi
done
