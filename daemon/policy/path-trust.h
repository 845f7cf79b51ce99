/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Opening a trusted file by path: a file nobody untrusted can write proves nothing if somebody
 * untrusted can rename it, or a directory above it, and put another file (an older root-owned
 * copy, a symlink, a hard link) in its place. Like OpenSSH's safe_path() (sshd's StrictModes),
 * every directory the lookup goes through must be owned by root or the trusted owner and
 * writable by nobody else; unlike it, the lookup is done here, one component at a time from
 * fds already checked, so what is checked is what is opened.
 *
 * Runs in: monitor and worker, wherever the policy is loaded (stat and xattr reads
 * only: it works unprivileged, in whatever directories the process may search).
 */
#pragma once

#include <sys/types.h>

typedef enum PathTrustFlags {
        PATH_TRUST_DIRECTORY = 1 << 0, /* the target must be a directory */
} PathTrustFlags;

/*
 * Opens path (relative to dir_fd, whose path dir_path is, for messages; dir_fd AT_FDCWD with
 * dir_path NULL for the working directory) as open(O_RDONLY|O_NONBLOCK|O_NOCTTY|O_CLOEXEC) would,
 * following symlinks, and checks on the way every directory it looks a name up in, except
 * dir_fd itself (the caller's to check):
 *   - it must be owned by root or by owner;
 *   - nobody else may write to it: not its group, nobody through "other", and no user or group
 *     a POSIX access ACL names with write (through the mask), but root and owner by uid; an ACL
 *     it cannot parse counts as a writer;
 *   - except that such a directory (/tmp) is accepted with the sticky bit set, if the entry the
 *     lookup takes from it (a directory, a symlink or the file) is owned by root or by owner:
 *     then only they can rename or remove that entry.
 * A symlink's target is looked up the same way, from "/" or from the symlink's directory (which
 * was checked), so a symlink may only lead from one checked directory into others. A target
 * file is not checked: it is the caller's (a file's rules are not a directory's). A target
 * directory (PATH_TRUST_DIRECTORY: a drop-in directory, whose entries are the files) is
 * checked as the directories on the way are, but without the sticky bit's exception: whoever
 * may add entries to it can plant symlinks, or entries that fail every load.
 *
 * The target is opened only if it is a regular file, a directory or /dev/null (a masked
 * drop-in), as its O_PATH lookup shows: never a device (whose opening can act), a FIFO or a
 * socket.
 *
 * Returns 0 and the fd in *ret_fd; -EPERM with *ret_reason set to a new string naming the
 * directory and what is wrong with it ("directory /etc/tsmd is writable by group 1000");
 * -ENOTDIR with PATH_TRUST_DIRECTORY and a target that is not a directory; -EBADFD, without
 * opening it, for a target that is none of the above; -ELOOP after 40
 * symlinks; or the -errno of a lookup that failed (-ENOENT, -EACCES...), *ret_reason set if
 * there is more to say than the errno. ret_fd and ret_reason are untouched otherwise.
 */
int path_trust_open(int dir_fd, const char *dir_path, const char *path, uid_t owner, PathTrustFlags flags,
                    int *ret_fd, char **ret_reason);
