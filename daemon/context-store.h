/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The state of an iommufd context kept next to its fd in systemd's fd store: whose it is and
 * which vDevices it had, bound, unbound, or changing (a bind or unbind was on its way, so a
 * restart cannot know where it ended). One small file per context, named by its reclaim token,
 * replaced atomically on every change. Runs in: daemon.
 */
#pragma once

#include <sys/types.h>

#include "macro.h"

typedef struct StoredVDevice {
        uint32_t id;
        char pci_address[32];
        bool bound;
        bool changing; /* bound is what it was before the change */
} StoredVDevice;

#define CONTEXT_STORE_MAX_VDEVICES 4096U

int context_store_save(const char *dir, const char *token, uid_t uid, const StoredVDevice *v, size_t n);
/* -ENOENT if there is no state; -EBADMSG if it is damaged. */
int context_store_load(const char *dir, const char *token, uid_t *ret_uid, StoredVDevice **ret, size_t *ret_n);
int context_store_remove(const char *dir, const char *token);
