/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Who may have written a file root acts on. The policy files decide who may touch the devices;
 * tsmd.conf names them, and the directories and the IOMMU device root hands over: a file the
 * worker (or any other user) could write would let it choose what root does. Both are opened
 * with every directory on the way checked (path-trust.h) and refused unless only root or the
 * trusted owner can write them (OpenSSH's StrictModes).
 *
 * Runs in: monitor and worker, wherever those files are loaded.
 */
#pragma once

#include <stdbool.h>
#include <sys/stat.h>

#include "policy.h"

/*
 * Checks who may write the open file fd (st: its fstat()): its owner must be root or
 * trust->owner; nobody may write it through "other", nor trust->worker_gid, whether as the
 * owning group or as a group a POSIX access ACL names (any other group may: an admins' group);
 * no user an ACL names may write it but root and trust->owner; an ACL it cannot parse is
 * refused. Returns 0, or -EPERM (the error reading the ACL) with *ret_reason a new string
 * saying why, ending in "; refusing to use it".
 */
int file_trust_check_writers(int fd, const struct stat *st, const PolicyFileTrust *trust, char **ret_reason);

/*
 * ini_read_file() for a file root acts on: opened through path_trust_open() and checked with
 * file_trust_check_writers(); *ret_st (if non-NULL) is the fstat() of the fd its bytes were read
 * from, taken before they were. Returns ini_read_file()'s errors (-ENOENT, -EISDIR, -EBADFD for
 * what is not a regular file, -EFBIG, -EBADMSG); or -EPERM (or a lookup's error) with
 * *ret_error a new "path: reason" naming the file or the directory at fault. *ret_error is
 * NULL when the errno says it all.
 */
int file_trust_read(const char *path, const PolicyFileTrust *trust, size_t max_size, char **ret_text,
                    struct stat *ret_st, char **ret_error);
