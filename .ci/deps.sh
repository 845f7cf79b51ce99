# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced by .ci/run and .ci/start: installs what building and testing tsmd needs on a
# fresh Debian 12 machine (as root). Everything comes from Debian's archive.

TSMD_PACKAGES=(
    meson ninja-build pkg-config gcc clang python3
    libclang-rt-14-dev
    libsystemd-dev libjson-c-dev libevent-dev libcap-dev
    systemd util-linux iproute2 procps e2fsprogs
    systemd-container
    golang-go golang-github-varlink-go-dev
    valgrind
    groff-base
)

install_deps() {
    local missing=()
    for p in "${TSMD_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "Missing packages: ${missing[*]} (run as root to install them)" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    echo "Installing ${#missing[@]} packages from Debian (a minute or two on a fresh machine)..." >&2
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# tsmd runs its worker as the system user 'tsmd' (privilege separation): create it, and the
# tsm-admin group, the way a package would (systemd-sysusers, idempotent).
create_users() {
    [ "$(id -u)" -eq 0 ] || return 0
    systemd-sysusers "$PWD/systemd/tsmd.sysusers"
}
