/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A file's POSIX access ACL, as Linux hands it out in the "system.posix_acl_access" xattr
 * (linux/posix_acl_xattr.h), parsed by hand so that tsmd needs no libacl. The policy loader
 * uses it to see who besides the owner may write a policy file or directory.
 *
 * Runs in: monitor and worker, wherever the policy is loaded.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* Entry tags and the write bit, as in the xattr. */
#define FILE_ACL_USER_OBJ 0x01U
#define FILE_ACL_USER 0x02U
#define FILE_ACL_GROUP_OBJ 0x04U
#define FILE_ACL_GROUP 0x08U
#define FILE_ACL_MASK 0x10U
#define FILE_ACL_OTHER 0x20U

#define FILE_ACL_READ 0x04U
#define FILE_ACL_WRITE 0x02U
#define FILE_ACL_EXECUTE 0x01U

#define FILE_ACL_XATTR "system.posix_acl_access"
#define FILE_ACL_XATTR_VERSION 2U

/* A named entry: FILE_ACL_USER (id is a uid) or FILE_ACL_GROUP (id is a gid). */
typedef struct FileAclEntry {
        uint16_t tag;
        uint16_t perm;
        uint32_t id;
} FileAclEntry;

typedef struct FileAcl {
        uint16_t user_obj;  /* the owner */
        uint16_t group_obj; /* the owning group, before the mask */
        uint16_t other;
        bool has_mask;      /* always, when there are named entries */
        uint16_t mask;
        size_t n_named;
        FileAclEntry named[]; /* in the order of the xattr */
} FileAcl;

/* What the kernel lets an entry's holder do: ACL_MASK caps named entries and the owning
 * group's; the owner and other are not masked. */
static inline uint16_t file_acl_masked(const FileAcl *acl, uint16_t perm) {
        return acl->has_mask ? perm & acl->mask : perm;
}

/* Parses an xattr value. Returns 0 and a new FileAcl (free() it) in *ret; -EPROTONOSUPPORT
 * for a version other than 2; -EBADMSG for anything else the kernel would not have accepted
 * (truncated, no entries, unknown tag or permission bit, entries missing, repeated or out of
 * order, a named entry without a mask or with the undefined id). */
int file_acl_parse(const void *data, size_t size, FileAcl **ret);

/* Reads and parses fd's access ACL. Returns 1 and *ret set if it has one; 0 and *ret = NULL if
 * it has none (or its file system knows no ACLs); the errors of file_acl_parse(), or another
 * -errno if the xattr cannot be read. */
int file_acl_read(int fd, FileAcl **ret);

/* The same for a path (followed if a symlink): for a directory this process may search but not
 * read, which it cannot open for fgetxattr() (an O_PATH fd takes no xattr calls). */
int file_acl_read_path(const char *path, FileAcl **ret);

static inline FileAcl *file_acl_free(FileAcl *acl) {
        return mfree(acl);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(FileAcl *, file_acl_free);
