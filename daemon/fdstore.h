/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Keeping VMs' iommufds across restarts of tsmd: each context's fd is stored in systemd's
 * file-descriptor store (FDSTORE=1) under a name saying whose it is, and the state needed to
 * rebuild the context (its vDevices, what is bound) is kept in a file next to it. After a
 * crash or an upgrade, systemd hands the fds back with the listening sockets, tsmd rebuilds
 * the contexts as orphans, and each VMM reclaims its own with the token it was given.
 * Without a service manager (no $NOTIFY_SOCKET) this is unavailable, and tsmd says so.
 *
 * SECURITY: the token is a secret, and names are not: any local user may list a service's fd
 * store (DumpFileDescriptorStore is unprivileged from systemd 254). A context is named by its
 * reclaim id instead, a one-way digest of the token: the first 128 bits of SHA-256 over the
 * token's 32 hex digits as text, in 32 lowercase hex digits. The worker derives it when it
 * makes the token and again from the token a VMM presents; only the worker's reply to the VMM
 * ever carries the token itself.
 *
 * Names: "ctxid.<uid>.<reclaim id>". A tsmd before this named them "ctx.<uid>.<token>"; a
 * monitor handed such a name back moves the fd to its new name (fdstore_parse_name() says
 * which it was).
 *
 * Renames: systemd keeps one copy of a file description, under the name it came with first (a
 * second FDSTORE=1 of it is dropped), and takes one name per notification. So the fd cannot go
 * in under its new name before the old name is out, and between the two it would be in the
 * store under no name: a tsmd killed there lost the context (not its VM, which holds its fd).
 * Instead a carrier goes in first, "ctxid.<uid>.<new id>.<old id>": a datagram socket of its
 * own with the fd in flight on it, a file description systemd has not seen. Then the old name
 * goes, the fd comes in under the new one, and the carrier goes; whenever tsmd dies, the store
 * holds the fd under one of the names, and a start settles it: the carrier is dropped where the
 * fd is there under either id, and stands for it under the new one where it is alone
 * (monitor_contexts_restore_done()).
 *
 * Shared: several contexts may hold one file description (AdoptContext of the VM's one iommufd
 * on several connections), and systemd would keep the first one's entry only, dropping the others
 * without an error. So a context whose file another context has goes in a carrier of its own,
 * "ctxid.<uid>.<id>.shared", and each context has its own entry, whichever of them ends first. A
 * rename of one (or of one with such a sibling) puts the new entry in first, as a carrier,
 * "ctxid.<uid>.<new id>.<old id>.shared", then takes the old name out: a start that finds the
 * context under both ids keeps the old one (the rename was cut off before its end, and its answer
 * never left), and takes the new entry out (monitor_contexts_restore_done()). Runs in: monitor
 * (the store) and worker (reclaim tokens and ids).
 */
#pragma once

#include "macro.h"

#define FDSTORE_PREFIX "ctxid."
#define FDSTORE_PREFIX_LEGACY "ctx." /* the token itself after it: read, never written */
#define FDSTORE_SHARED_SUFFIX ".shared" /* a shared context's carrier (Shared above) */
#define RECLAIM_TOKEN_LEN 32         /* hex digits: 128 random bits */
#define RECLAIM_ID_LEN 32            /* hex digits: 128 bits of SHA-256(token) */

/* The emulated devices' snapshot (emu-state.h): not a context's, and not one of ours in the sense
 * of fdstore_name_is_ours(). */
#define FDSTORE_EMU_STATE_NAME "tsmd-emu-state"
/* The configuration and policy that loaded last (last-good.h), for a start with the files broken
 * on disk: one entry, replaced by each new set. Not one of ours either. */
#define FDSTORE_LAST_GOOD_NAME "tsmd-last-good"

bool fdstore_available(void);
/* Stores fd (not taken: systemd gets a copy) under FDNAME=ctxid.<uid>.<reclaim_id>. */
int fdstore_put(int fd, uid_t uid, const char *reclaim_id);
int fdstore_remove(uid_t uid, const char *reclaim_id);
/* Stores a carrier of fd (its own socket with fd in flight, not polled) as
 * "ctxid.<uid>.<new_id>.<old_id>": the fd stays in the store under this name while its own
 * changes from old_id to new_id (see Renames above). */
int fdstore_put_moving(int fd, uid_t uid, const char *new_id, const char *old_id);
int fdstore_remove_moving(uid_t uid, const char *new_id, const char *old_id);
/* Stores a carrier of fd as "ctxid.<uid>.<reclaim_id>.shared", or, renamed from from (not NULL),
 * "ctxid.<uid>.<reclaim_id>.<from>.shared" (see Shared above). */
int fdstore_put_shared(int fd, uid_t uid, const char *reclaim_id, const char *from);
int fdstore_remove_shared(uid_t uid, const char *reclaim_id, const char *from);
/* The fd a carrier handed back holds, a copy of it (the carrier keeps it). -EBADMSG if it holds
 * something else. */
int fdstore_carried_fd(int carrier, int *ret_fd);
/* Stores fd (not taken) under FDNAME=name, not polled. */
int fdstore_put_name(int fd, const char *name);
/* Removes whatever is stored under name (one handed back by systemd, as it was). */
int fdstore_remove_name(const char *name);
/* The fd the service manager passed under name (LISTEN_FDNAMES), still to be taken with the rest
 * (monitor_listen()); -ENOENT if none. */
int fdstore_passed_fd(const char *name);
/* True if name starts as one of ours does, either format: systemd hands back nothing else
 * under such a name. */
bool fdstore_name_is_ours(const char *name);
/*
 * Parses a name handed back by systemd; -EINVAL if it is not one of ours. ret_reclaim_id is
 * the context's reclaim id, derived from the token for a legacy name; *ret_legacy says whether
 * it was one (which still names the fd by its token, and is to be replaced).
 */
int fdstore_parse_name(const char *name, uid_t *ret_uid, char ret_reclaim_id[static RECLAIM_ID_LEN + 1],
                       bool *ret_legacy);

/* Parses a carrier's name; -EINVAL if name is no carrier's. (fdstore_parse_name() refuses it.) */
int fdstore_parse_moving_name(const char *name, uid_t *ret_uid, char ret_new_id[static RECLAIM_ID_LEN + 1],
                              char ret_old_id[static RECLAIM_ID_LEN + 1]);

/* Parses a shared context's name; -EINVAL if name is no such name. *ret_from is "" if it names
 * no id the context was renamed from. (fdstore_parse_name() and _parse_moving_name() refuse it.) */
int fdstore_parse_shared_name(const char *name, uid_t *ret_uid, char ret_reclaim_id[static RECLAIM_ID_LEN + 1],
                              char ret_from[static RECLAIM_ID_LEN + 1]);

/* True if s is exactly 32 lowercase hex digits, as tokens and reclaim ids are. */
bool reclaim_hex_is_valid(const char *s);
/* The reclaim id of token (any string: a VMM's guess is hashed as it is). */
void reclaim_id_from_token(const char *token, char ret_reclaim_id[static RECLAIM_ID_LEN + 1]);
/* A fresh random token (getrandom), and its reclaim id. */
int reclaim_token_new(char ret_token[static RECLAIM_TOKEN_LEN + 1], char ret_reclaim_id[static RECLAIM_ID_LEN + 1]);
