/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * POSIX access ACLs for tests, built by hand in the "system.posix_acl_access" xattr format
 * (linux/posix_acl_xattr.h: u32 version 2, then { u16 tag, u16 perm, u32 id }, little endian)
 * and set with setxattr(2), so that no test needs libacl or setfacl.
 * Runs in: tests.
 */
#pragma once

#include <endian.h>
#include <stdint.h>
#include <sys/xattr.h>

#include "harness.h"

#define TACL_USER_OBJ 0x01
#define TACL_USER 0x02
#define TACL_GROUP_OBJ 0x04
#define TACL_GROUP 0x08
#define TACL_MASK 0x10
#define TACL_OTHER 0x20

#define TACL_R 0x04
#define TACL_W 0x02
#define TACL_RW (TACL_R | TACL_W)

typedef struct TaclEntry {
        uint16_t tag;
        uint16_t perm;
        uint32_t id;
} TaclEntry;

/* Entries, for TACL_SET() and tacl_blob(). */
#define TA_USER_OBJ(p) { TACL_USER_OBJ, (p), UINT32_MAX }
#define TA_USER(uid, p) { TACL_USER, (p), (uid) }
#define TA_GROUP_OBJ(p) { TACL_GROUP_OBJ, (p), UINT32_MAX }
#define TA_GROUP(gid, p) { TACL_GROUP, (p), (gid) }
#define TA_MASK(p) { TACL_MASK, (p), UINT32_MAX }
#define TA_OTHER(p) { TACL_OTHER, (p), UINT32_MAX }

#define TACL_BLOB_MAX (4 + 64 * 8)

/* Writes version and entries to buf (TACL_BLOB_MAX bytes); returns the size. */
static inline size_t tacl_blob(uint32_t version, const TaclEntry *entries, size_t n, uint8_t *buf) {
        uint32_t v = htole32(version);

        ASSERT_TRUE(4 + n * 8 <= TACL_BLOB_MAX);
        memcpy(buf, &v, 4);
        for (size_t i = 0; i < n; i++) {
                uint16_t tag = htole16(entries[i].tag), perm = htole16(entries[i].perm);
                uint32_t id = htole32(entries[i].id);

                memcpy(buf + 4 + i * 8, &tag, 2);
                memcpy(buf + 4 + i * 8 + 2, &perm, 2);
                memcpy(buf + 4 + i * 8 + 4, &id, 4);
        }
        return 4 + n * 8;
}

/* Sets path's access ACL (the kernel also sets the mode's bits from it); SKIPs the test if the
 * file system knows no ACLs. */
static inline void tacl_set(const char *path, const TaclEntry *entries, size_t n) {
        uint8_t buf[TACL_BLOB_MAX];
        size_t size = tacl_blob(2, entries, n, buf);

        if (setxattr(path, "system.posix_acl_access", buf, size, 0) < 0) {
                if (errno == EOPNOTSUPP)
                        SKIP("the file system of %s has no POSIX ACLs", path);
                TEST_FAIL("setxattr(%s, system.posix_acl_access): %s", path, strerror(errno));
        }
}
#define TACL_SET(path, ...)                                                                        \
        tacl_set((path), (const TaclEntry[]) { __VA_ARGS__ },                                      \
                 sizeof((const TaclEntry[]) { __VA_ARGS__ }) / sizeof(TaclEntry))

/* SKIPs the test unless files made in dir can have ACLs: for a test that would rather know
 * before it starts anything. */
static inline void tacl_need_support(const char *dir) {
        char path[4096];
        int fd;

        snprintf(path, sizeof(path), "%s/.tacl-probe-XXXXXX", dir);
        fd = mkstemp(path);
        if (fd < 0)
                TEST_FAIL("mkstemp(%s): %s", path, strerror(errno));
        (void) close(fd);
        tacl_set(path, (const TaclEntry[]) { TA_USER_OBJ(TACL_RW), TA_GROUP_OBJ(0), TA_OTHER(0) }, 3);
        (void) unlink(path);
}

/* Back to the mode bits alone. */
static inline void tacl_remove(const char *path) {
        if (removexattr(path, "system.posix_acl_access") < 0 && errno != ENODATA)
                TEST_FAIL("removexattr(%s, system.posix_acl_access): %s", path, strerror(errno));
}
