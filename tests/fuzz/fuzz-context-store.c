/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for what a restarted tsmd reads back about a kept context: the state file
 * (daemon/context-store.c), which the worker before wrote and may have been made to write
 * anything into, and the fd store names (daemon/fdstore.c) the service manager hands back.
 * Checks what must hold, not only the absence of crashes:
 *   - a refused file is -EBADMSG (or -ENOMEM) and returns nothing;
 *   - a loaded one names an owner (never the "none" uid or gid), vDevices with distinct
 *     non-zero ids, and PCI addresses as the kernel names them; a previous reclaim id is empty
 *     or a valid one;
 *   - what loads saves to a file that loads to the same state;
 *   - every line parsed as an fd store name gives a reclaim id that is 32 lowercase hex digits
 *     and a uid that is not the "none" uid, and a new-style name formats back to one that
 *     parses to the same.
 * Input: the state file. Runs in: tests (fuzzing builds only).
 */

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "context-store.h"
#include "fdstore.h"
#include "fuzz.h"
#include "inventory.h"

/* What a restore reads at most; larger inputs only slow the fuzzer down. */
#define INPUT_MAX (64U * 1024U)
#define ID "0123456789abcdef0123456789abcdef"

/* tmpfs: the fuzzer writes the file twice per input ("/tmp/////" without /dev/shm). */
static char dir[] = "/dev/shm/fuzz-context-store-XXXXXX";
static bool made;

static void dir_remove(void) {
        char path[sizeof(dir) + 64];

        snprintf(path, sizeof(path), "%s/" ID ".state", dir);
        (void) unlink(path);
        (void) rmdir(dir);
}

static void write_state(const uint8_t *data, size_t size) {
        char path[sizeof(dir) + 64];
        int fd;

        snprintf(path, sizeof(path), "%s/" ID ".state", dir);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        CHECK(fd >= 0);
        CHECK(size == 0 || write(fd, data, size) == (ssize_t) size);
        CHECK(close(fd) == 0);
}

static void check_state(const StoredOwner *o, const StoredVDevice *v, size_t n) {
        CHECK(o->uid != (uid_t) -1);
        CHECK(o->pid >= 0);
        CHECK(isempty(o->previous_reclaim_id) || reclaim_hex_is_valid(o->previous_reclaim_id));
        CHECK(n <= CONTEXT_STORE_MAX_VDEVICES);
        for (size_t i = 0; i < n; i++) {
                CHECK(v[i].id != 0);
                CHECK(memchr(v[i].pci_address, 0, sizeof(v[i].pci_address)));
                CHECK(pci_address_is_valid(v[i].pci_address));
                CHECK(!(v[i].bound && v[i].changing));
                for (size_t j = 0; j < i; j++)
                        CHECK(v[j].id != v[i].id);
        }
}

static bool state_equal(const StoredOwner *a, const StoredVDevice *va, size_t na, const StoredOwner *b,
                        const StoredVDevice *vb, size_t nb) {
        if (a->uid != b->uid || a->gid != b->gid || a->pid != b->pid ||
            !streq(a->previous_reclaim_id, b->previous_reclaim_id) || na != nb)
                return false;
        for (size_t i = 0; i < na; i++)
                if (va[i].id != vb[i].id || !streq(va[i].pci_address, vb[i].pci_address) ||
                    va[i].bound != vb[i].bound || va[i].changing != vb[i].changing)
                        return false;
        return true;
}

static void check_fdstore_name(const char *name) {
        char reclaim_id[RECLAIM_ID_LEN + 1], again[RECLAIM_ID_LEN + 1], canonical[128];
        bool legacy, legacy_again;
        uid_t uid, uid_again;

        if (fdstore_parse_name(name, &uid, reclaim_id, &legacy) < 0)
                return;
        CHECK(fdstore_name_is_ours(name));
        CHECK(uid != (uid_t) -1);
        CHECK(reclaim_hex_is_valid(reclaim_id));
        if (legacy)
                return;
        /* As fdstore_put() names it. */
        snprintf(canonical, sizeof(canonical), FDSTORE_PREFIX "%u.%s", (unsigned) uid, reclaim_id);
        CHECK(fdstore_parse_name(canonical, &uid_again, again, &legacy_again) >= 0);
        CHECK(uid_again == uid && streq(again, reclaim_id) && !legacy_again);
}

static void check_fdstore_names(const uint8_t *data, size_t size) {
        char line[256];

        for (size_t pos = 0; pos < size;) {
                const uint8_t *nl = memchr(data + pos, '\n', size - pos);
                size_t len = nl ? (size_t) (nl - (data + pos)) : size - pos;

                if (len < sizeof(line)) {
                        memcpy(line, data + pos, len);
                        line[len] = 0;
                        check_fdstore_name(line);
                }
                pos += len + 1;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        StoredVDevice *v = NULL, *again = NULL;
        StoredOwner owner, owner_again;
        size_t n = 0, n_again = 0;
        int r;

        if (size > INPUT_MAX)
                return 0;
        if (!made) {
                if (access("/dev/shm", W_OK) < 0)
                        memcpy(dir, "/tmp/////", strlen("/dev/shm/"));
                CHECK(mkdtemp(dir));
                CHECK(atexit(dir_remove) == 0);
                made = true;
        }

        check_fdstore_names(data, size);

        write_state(data, size);
        r = context_store_load(dir, ID, &owner, &v, &n);
        if (r < 0) {
                CHECK(r == -EBADMSG || r == -ENOMEM);
                CHECK(!v);
                return 0;
        }
        check_state(&owner, v, n);

        /* What the restored worker writes back (guest_context_persist()) loads as it was. */
        CHECK(context_store_save(dir, ID, &owner, v, n) >= 0);
        CHECK(context_store_load(dir, ID, &owner_again, &again, &n_again) >= 0);
        CHECK(state_equal(&owner, v, n, &owner_again, again, n_again));
        free(again);
        free(v);
        return 0;
}
