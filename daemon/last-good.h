/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The last configuration and policy that loaded well, so that a worker restarted while an
 * administrator has tsmd.conf or a policy file broken on disk (a typo, an edit half done)
 * still serves, with what was in force, instead of failing until the file is fixed.
 *
 * The monitor reads tsmd.conf and the policy files it names itself (root, with the policy's
 * trust checks), parses them, and only if every one of them loads keeps the exact bytes it
 * parsed in one sealed memfd: at start, at each reload and whenever it starts a worker. Each
 * worker gets that fd (LAST_GOOD, proto/tsm-priv.h) and starts from it, not from the disk, and
 * a reloading worker gets the memfd of its reload's load in the reply (RELOAD) and applies it,
 * so its policy is the one the monitor's scope gate follows.
 *
 * SECURITY: what a later worker starts with is only ever bytes the monitor read from files
 * only root may write, sealed (no write, no resize, no unsealing) before any worker gets the
 * fd: nothing a worker does, compromised or not, changes them. A worker only ever triggers a
 * re-read of the trusted files (RELOAD), and the monitor's taking of what that read loaded.
 *
 * Across a restart of tsmd the fd is kept in the service manager's fd store too
 * (FDSTORE_LAST_GOOD_NAME, fdstore.h), and a start whose files do not load starts from it, as a
 * worker does (monitor-files.c, files_at_start()). SECURITY: only tsmd's main process, the monitor,
 * may store fds there (Type=notify's NotifyAccess=main; the worker has no NOTIFY_SOCKET), and
 * the seals are checked as for a worker.
 *
 * Contents: entries of a name, a NUL, a text and a NUL: first tsmd.conf (an empty name: there
 * was none, the built-in defaults), then every policy file in the order it was parsed, then an
 * empty name with the Users=/Groups= names as the load resolved them (policy_resolved_names()).
 * A restore resolves names only from those: it is what was loaded, not a new load whose names
 * the name services answer otherwise by now (a user deleted, or recreated under another uid),
 * or answer the sandboxed worker otherwise than the root monitor (LDAP). A memfd kept by a
 * tsmd before the names had none (its fd store's, at an upgrade): restored resolving through
 * NSS, as that tsmd did.
 *
 * Runs in: monitor (last_good_load(), last_good_foreach_file()) and worker (last_good_restore()).
 */
#pragma once

#include <stdbool.h>

#include <stdint.h>
#include <sys/stat.h>

#include "daemon-config.h"
#include "policy.h"

/* How a load found each file it read, for the monitor to tell later that a file whose stat is
 * still that holds the bytes kept, without reading it again (files-on-disk.h). */
typedef struct LastGoodRead {
        char *name;     /* as the memfd names it */
        struct stat st; /* fstat() of the fd its bytes were read from, taken before they were */
} LastGoodRead;

typedef struct LastGoodReads {
        LastGoodRead *files; /* those read, in the memfd's order (no tsmd.conf if there was none) */
        size_t n_files, allocated_files;
        uint64_t start_usec; /* CLOCK_REALTIME before the load opened any */
} LastGoodReads;

void last_good_reads_done(LastGoodReads *reads);

/*
 * Loads config_path over the built-in defaults (a missing file is those if optional), then the
 * policy it names, as trust allows, and keeps the bytes parsed in a new sealed memfd. All or
 * nothing: the configuration (to be freed with daemon_config_done()), the policy and the fd
 * are returned only if both loaded. On failure, -errno, with why in *ret_error (if non-NULL):
 * a new "file:line: message", "file: reason" (the file's trust, or the file as a whole), or
 * the memfd's trouble; NULL only if out of memory; and in *ret_policy_failed (if non-NULL)
 * whether tsmd.conf loaded and the policy did not. tsmd.conf's and the memfd's errors are
 * logged here; a policy's is the caller's to log, which says what it keeps. *ret_reads (if
 * non-NULL; to be freed with last_good_reads_done()) says how each file was found, on success.
 */
int last_good_load(const char *config_path, bool optional, const PolicyFileTrust *trust, DaemonConfig *ret_config,
                   Policy **ret_policy, int *ret_fd, LastGoodReads *ret_reads, char **ret_error,
                   bool *ret_policy_failed);

/*
 * Parses what last_good_load() kept, from fd (not taken), over the built-in defaults, into
 * *ret_config and *ret_policy. -EPERM if fd is not
 * sealed against writes and resizing, -EBADMSG if it is not made of entries as above (the
 * configuration's and the policy's own errors as they report them, the policy's message in
 * *ret_error). On success *ret_names lists the files, "'a', 'b'", for the log.
 */
int last_good_restore(int fd, DaemonConfig *ret_config, Policy **ret_policy, char **ret_names, char **ret_error);

/* Called by last_good_foreach_file() with each file of what last_good_load() kept, in order:
 * index 0 is tsmd.conf (name "": there was none, the built-in defaults), then the policy files
 * as parsed; text is the file's bytes, size long (NUL not counted). */
typedef int (*LastGoodFileFunc)(size_t index, const char *name, const char *text, size_t size, void *userdata);

/* Hands each file kept in fd (not taken) to func; stops at func's first error and returns it.
 * -EPERM and -EBADMSG as last_good_restore(). */
int last_good_foreach_file(int fd, LastGoodFileFunc func, void *userdata);
