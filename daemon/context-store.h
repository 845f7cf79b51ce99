/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The state of an iommufd context kept next to its fd in systemd's fd store: whose it is and
 * which vDevices it had, bound, unbound, or changing (a bind or unbind was on its way, so a
 * restart cannot know where it ended). One small file per context, <reclaim id>.state (never
 * the reclaim token: fdstore.h), replaced atomically on every change; nothing in it is secret.
 * A key is added as optional, so that files written before it still load (an older tsmd
 * refuses a newer file as damaged, and restores its context without vDevices). Version=2 (the
 * first key) says the file ends in End=<number of vDevices>: a file cut off at a line's end is
 * told from a whole one; files without it, of a tsmd before, load as they did. A damaged file
 * is set aside (context_store_set_aside()), for whoever looks into what its context had.
 * Runs in: worker.
 */
#pragma once

#include <sys/types.h>

#include "fdstore.h"
#include "macro.h"

typedef struct StoredVDevice {
        uint32_t id;
        char pci_address[32];
        bool bound;
        bool changing; /* bound is what it was before the change */
} StoredVDevice;

/* Whose the context is: the VMM as it was when it opened (or last reclaimed) the context, for
 * the records of what tsmd does on its behalf after a restart. */
typedef struct StoredOwner {
        uid_t uid;
        gid_t gid; /* (gid_t) -1: not known (a file written before gid and pid were kept) */
        pid_t pid; /* 0: not known */
        /* The reclaim id of the token the owner reclaimed the context with last, while the
         * renewed one the answer carried may not have reached it ("" once it did, or if none):
         * reclaims with either (guest-restore.c). A digest, as the file's name. */
        char previous_reclaim_id[RECLAIM_ID_LEN + 1];
} StoredOwner;

#define CONTEXT_STORE_MAX_VDEVICES 4096U
#define CONTEXT_STORE_VERSION 2U

/* <reclaim id>.state.damaged: a file context_store_load() refused, kept for an admin (the sweep
 * leaves it). At most CONTEXT_STORE_DAMAGED_MAX of them, each a file of one context: a worker
 * made to write garbage into every file fills no disk with them; the admin removes them. */
#define CONTEXT_STORE_DAMAGED_SUFFIX ".damaged"
#define CONTEXT_STORE_DAMAGED_MAX 32U

/* Makes dir (if missing) and makes it 0700, as its owner: the names in it are reclaim ids, and
 * those a tsmd before them left are reclaim tokens (context_store_adopt_legacy()). -EPERM if it
 * is not the caller's. ret_old_mode (optional): its mode before. Drops what
 * context_store_adopt_legacy() kept (context_store_forget_legacy()). */
int context_store_prepare(const char *dir, mode_t *ret_old_mode);
/* Writes the state anew (a new file, 0600), replacing any. -EPERM, writing nothing, if dir is
 * not the caller's or others have any access to it (context_store_prepare() makes it so). */
int context_store_save(const char *dir, const char *reclaim_id, const StoredOwner *owner, const StoredVDevice *v,
                       size_t n);
/* -ENOENT if there is no state; -EBADMSG if it is damaged. */
int context_store_load(const char *dir, const char *reclaim_id, StoredOwner *ret_owner, StoredVDevice **ret,
                       size_t *ret_n);
int context_store_remove(const char *dir, const char *reclaim_id);
/* Renames the state of reclaim_id to <reclaim id>.state.damaged, replacing the id's one before.
 * -ENOSPC, changing nothing, if CONTEXT_STORE_DAMAGED_MAX others are there already. */
int context_store_set_aside(const char *dir, const char *reclaim_id);
/* Removes every state file in dir, and leftover of a save, whose reclaim id keep() does not
 * want: the state of contexts that are gone (closed while no tsmd ran, lost with a service
 * manager's fd store, or named by its reclaim token by an older tsmd and never restored).
 * Returns how many it removed. Call it once a restore is done, before any save. */
int context_store_sweep(const char *dir, bool (*keep)(const char *reclaim_id, void *userdata), void *userdata);
/* A tsmd before named the file by the context's reclaim token: finds the <token>.state whose
 * token has reclaim_id, and renames it <reclaim_id>.state. -ENOENT if there is none. The first
 * call hashes every such name in dir once and keeps them (tokens among them) until
 * context_store_forget_legacy(), for the calls after it: a restore of many contexts hashes each
 * file once. Files added to dir meanwhile are not seen. */
int context_store_adopt_legacy(const char *dir, const char *reclaim_id);
/* Drops (and wipes) what context_store_adopt_legacy() keeps: call it when a restore is done. */
void context_store_forget_legacy(void);
/* SHA-256 computations context_store_adopt_legacy() made so far (for tests). */
uint64_t context_store_legacy_hashes(void);
