/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The "system.posix_acl_access" xattr: a little-endian header { u32 version = 2 } and then
 * entries { u16 tag, u16 perm, u32 id } (linux/posix_acl_xattr.h). The kernel writes it sorted
 * and complete; whatever else we find is refused, because its holder means to trust it.
 *
 * Runs in: monitor and worker, wherever the policy is loaded.
 */

#include <linux/limits.h>
#include <sys/xattr.h>

#include "file-acl.h"
#include "unaligned.h"

#define HEADER_SIZE 4U
#define ENTRY_SIZE 8U
#define ID_UNDEFINED UINT32_MAX
#define PERM_ALL (FILE_ACL_READ | FILE_ACL_WRITE | FILE_ACL_EXECUTE)

int file_acl_parse(const void *data, size_t size, FileAcl **ret) {
        _cleanup_(file_acl_freep) FileAcl *acl = NULL;
        const uint8_t *p = data;
        /* The kernel's posix_acl_valid(): USER_OBJ, USER*, GROUP_OBJ, GROUP*, [MASK], OTHER.
         * 'expect' is the tag (set) allowed next; 0 once OTHER was seen. */
        unsigned expect = FILE_ACL_USER_OBJ;
        bool needs_mask = false;
        size_t n;

        assert_return(data || size == 0, -EINVAL);
        assert_return(ret, -EINVAL);

        if (size < HEADER_SIZE)
                return -EBADMSG;
        if (unaligned_read_le32(p) != FILE_ACL_XATTR_VERSION)
                return -EPROTONOSUPPORT;
        if ((size - HEADER_SIZE) % ENTRY_SIZE != 0)
                return -EBADMSG;
        n = (size - HEADER_SIZE) / ENTRY_SIZE;
        if (n == 0) /* the kernel answers ENODATA rather than hand out an empty ACL */
                return -EBADMSG;

        acl = calloc(1, offsetof(FileAcl, named) + n * sizeof(FileAclEntry));
        if (!acl)
                return -ENOMEM;

        for (size_t i = 0; i < n; i++) {
                const uint8_t *e = p + HEADER_SIZE + i * ENTRY_SIZE;
                uint16_t tag = unaligned_read_le16(e), perm = unaligned_read_le16(e + 2);
                uint32_t id = unaligned_read_le32(e + 4);

                if (perm & ~PERM_ALL)
                        return -EBADMSG;

                switch (tag) {
                case FILE_ACL_USER_OBJ:
                        if (expect != FILE_ACL_USER_OBJ)
                                return -EBADMSG;
                        acl->user_obj = perm;
                        expect = FILE_ACL_USER;
                        break;
                case FILE_ACL_USER:
                case FILE_ACL_GROUP:
                        if (expect != tag || id == ID_UNDEFINED)
                                return -EBADMSG;
                        acl->named[acl->n_named++] = (FileAclEntry) { .tag = tag, .perm = perm, .id = id };
                        needs_mask = true;
                        break;
                case FILE_ACL_GROUP_OBJ:
                        if (expect != FILE_ACL_USER)
                                return -EBADMSG;
                        acl->group_obj = perm;
                        expect = FILE_ACL_GROUP;
                        break;
                case FILE_ACL_MASK:
                        if (expect != FILE_ACL_GROUP)
                                return -EBADMSG;
                        acl->has_mask = true;
                        acl->mask = perm;
                        expect = FILE_ACL_OTHER;
                        break;
                case FILE_ACL_OTHER:
                        /* SECURITY: without a mask the kernel would not cap named entries. */
                        if (!(expect == FILE_ACL_OTHER || (expect == FILE_ACL_GROUP && !needs_mask)))
                                return -EBADMSG;
                        acl->other = perm;
                        expect = 0;
                        break;
                default:
                        return -EBADMSG;
                }
        }
        if (expect != 0)
                return -EBADMSG;

        *ret = TAKE_PTR(acl);
        return 0;
}

/* fgetxattr() on fd, or getxattr() on path if fd < 0. */
static int read_xattr(int fd, const char *path, FileAcl **ret) {
        _cleanup_free_ uint8_t *buf = NULL;
        FileAcl *acl;
        ssize_t n;
        int r;

        /* The largest value an xattr can have: one read, no race with a growing ACL. */
        buf = malloc(XATTR_SIZE_MAX);
        if (!buf)
                return -ENOMEM;
        n = fd >= 0 ? fgetxattr(fd, FILE_ACL_XATTR, buf, XATTR_SIZE_MAX) :
                      getxattr(path, FILE_ACL_XATTR, buf, XATTR_SIZE_MAX);
        if (n < 0) {
                if (errno == ENODATA || errno == EOPNOTSUPP) {
                        *ret = NULL;
                        return 0;
                }
                return negative_errno();
        }

        r = file_acl_parse(buf, (size_t) n, &acl);
        if (r < 0)
                return r;
        *ret = acl;
        return 1;
}

int file_acl_read(int fd, FileAcl **ret) {
        assert_return(fd >= 0, -EBADF);
        assert_return(ret, -EINVAL);

        return read_xattr(fd, NULL, ret);
}

int file_acl_read_path(const char *path, FileAcl **ret) {
        assert_return(path, -EINVAL);
        assert_return(ret, -EINVAL);

        return read_xattr(-EBADF, path, ret);
}
