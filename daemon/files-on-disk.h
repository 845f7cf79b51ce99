/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Whether the files of the set in force still say on disk what its load read, as systemd tells
 * a unit file "changed on disk": tsmd.conf, the policy file and every drop-in of its directory,
 * those added since the load included (io.tsmd.Service.GetStatus, configuration.changedOnDisk).
 *
 * What the load read is the sealed memfd of the set (last-good.h): its bytes, not the disk's
 * then, are the reference, so a file changed between the load and the first check counts.
 * "Differs" is judged by content (SHA-256 of the bytes), never by stat alone: a touch, or a
 * file rewritten with the same bytes, is no change. A file is read and hashed only when its
 * stat identity (device, inode, size, mtime, ctime) is not the one of a read that found it the
 * same; a file whose size is not the loaded one differs without being read. An identity is
 * trusted only once its ctime is STAT_SETTLE_USEC old at the check (git's "racily clean" rule):
 * a write in the same clock tick as the read leaves the identity as it was. So a check stats
 * the files and lists the drop-in directory, and reads only files root changed since. The load's
 * own read counts as one (last_good_load()'s LastGoodReads): a file whose stat is still the one
 * the load read its bytes under, settled before the load began, is not read again.
 *
 * SECURITY: the files are root's (the load's trust checks): the monitor reads them, never the
 * worker, which gets the list of paths only. A path that is not a regular file is not opened
 * (a FIFO would block, a device open may act); it differs unless it is none (missing, or a
 * symlink to /dev/null as a masked drop-in) and there was none.
 *
 * Runs in: monitor.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "file-settle.h"
#include "last-good.h"

typedef struct FilesOnDisk FilesOnDisk;

/* An identity younger than this at the check is read again at the next: the loads' rule too. */
#define FILES_ON_DISK_STAT_SETTLE_USEC FILE_SETTLE_USEC

/*
 * What the load kept in last_good_fd (a memfd of last_good_load(), not taken) read of
 * config_path, policy_file and the drop-ins of dropin_dir (either may be NULL: none), as the
 * reference for files_on_disk_check(); reads: how that load found them (NULL: unknown, a set
 * restored from a memfd: each is read at the first check). -EPERM, -EBADMSG as
 * last_good_restore(), -ENOMEM.
 */
int files_on_disk_new(int last_good_fd, const LastGoodReads *reads, const char *config_path, const char *policy_file,
                      const char *dropin_dir, FilesOnDisk **ret);
FilesOnDisk *files_on_disk_free(FilesOnDisk *f);

/*
 * Compares the disk with the load, now_usec being CLOCK_REALTIME now. Returns how many files
 * differ, and their paths, each NUL-terminated, one after the other, in *ret_paths (a new
 * buffer, ret_size bytes; NULL if none): tsmd.conf, the policy file, the loaded drop-ins in
 * their order, then drop-ins added since, sorted. A file that cannot be stat()ed or read
 * differs (a reload would not read what was loaded). -ENOMEM only.
 */
int files_on_disk_check(FilesOnDisk *f, uint64_t now_usec, char **ret_paths, size_t *ret_size);

/* Directories, beyond the files' own, that hold the targets of those of the files that are
 * symlinks (each link of a chain's), found at files_on_disk_new(): an edit of a target is in
 * its directory, not the link's. */
#define FILES_ON_DISK_LINK_DIRS_MAX 8
/* Links followed from one file, at most (the kernel follows 40: a chain this long is odd). */
#define FILES_ON_DISK_LINK_HOPS_MAX 8

/* The directories a change of whose entries may change the result (the files' and the drop-in
 * directory's parents, that directory, and the directories of the files' symlink targets):
 * for each, func(path, userdata). */
void files_on_disk_foreach_dir(const FilesOnDisk *f, void (*func)(const char *dir, void *userdata), void *userdata);

/* Whether some file's symlink target is in a directory files_on_disk_foreach_dir() does not name:
 * past FILES_ON_DISK_LINK_DIRS_MAX or _HOPS_MAX, or one that anybody but root may write (whose
 * every change would start a check: /tmp). Its edits are found by checking every so often. */
bool files_on_disk_links_unwatched(const FilesOnDisk *f);

/* How many files the checks read and hashed, for the tests of the bound. */
uint64_t files_on_disk_n_read(const FilesOnDisk *f);
