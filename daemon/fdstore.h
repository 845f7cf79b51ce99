/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Keeping VMs' iommufds across restarts of tsmd: each context's fd is stored in systemd's
 * file-descriptor store (FDSTORE=1) under a name saying whose it is, and the state needed to
 * rebuild the context (its vDevices, what is bound) is kept in a file next to it. After a
 * crash or an upgrade, systemd hands the fds back with the listening sockets, tsmd rebuilds
 * the contexts as orphans, and each VMM reclaims its own with the token it was given.
 * Without a service manager (no $NOTIFY_SOCKET) this is unavailable, and tsmd says so.
 * Runs in: daemon.
 */
#pragma once

#include "macro.h"

#define FDSTORE_PREFIX "ctx."
#define RECLAIM_TOKEN_LEN 32 /* hex digits: 128 bits */

bool fdstore_available(void);
/* Stores fd (not taken: systemd gets a copy) under FDNAME=ctx.<uid>.<token>. */
int fdstore_put(int fd, uid_t uid, const char *token);
int fdstore_remove(uid_t uid, const char *token);
/* Parses a name handed back by systemd; -EINVAL if it is not one of ours. */
int fdstore_parse_name(const char *name, uid_t *ret_uid, char ret_token[RECLAIM_TOKEN_LEN + 1]);

/* A fresh random token (getrandom). */
int reclaim_token_new(char ret[RECLAIM_TOKEN_LEN + 1]);
