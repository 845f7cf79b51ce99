/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The POSIX ACL xattr parser (daemon/policy/file-acl.c): crafted blobs, good and bad, and the
 * ACL of real files. Runs in: tests (the real-file case SKIPs on a file system without ACLs).
 */

#include <fcntl.h>
#include <sys/stat.h>

#include "acl-xattr.h"
#include "file-acl.h"
#include "harness.h"

#define PARSE(version, ...)                                                                        \
        ({                                                                                         \
                const TaclEntry _e_[] = { __VA_ARGS__ };                                           \
                uint8_t _b_[TACL_BLOB_MAX];                                                        \
                file_acl_parse(_b_, tacl_blob((version), _e_, ELEMENTSOF(_e_), _b_), &acl);        \
        })

TEST(minimal_acl) {
        _cleanup_(file_acl_freep) FileAcl *acl = NULL;

        ASSERT_OK(PARSE(2, TA_USER_OBJ(7), TA_GROUP_OBJ(5), TA_OTHER(4)));
        ASSERT_EQ(acl->user_obj, 7);
        ASSERT_EQ(acl->group_obj, 5);
        ASSERT_EQ(acl->other, 4);
        ASSERT_FALSE(acl->has_mask);
        ASSERT_EQ(acl->n_named, 0);
        /* No mask: nothing is capped. */
        ASSERT_EQ(file_acl_masked(acl, 7), 7);
}

TEST(named_entries_and_mask) {
        _cleanup_(file_acl_freep) FileAcl *acl = NULL;

        ASSERT_OK(PARSE(2, TA_USER_OBJ(6), TA_USER(0, 6), TA_USER(4242, 6), TA_GROUP_OBJ(6),
                        TA_GROUP(4243, 2), TA_MASK(6), TA_OTHER(4)));
        ASSERT_EQ(acl->n_named, 3);
        ASSERT_EQ(acl->named[1].tag, FILE_ACL_USER);
        ASSERT_EQ(acl->named[1].id, 4242);
        ASSERT_EQ(acl->named[1].perm, 6);
        ASSERT_EQ(acl->named[2].tag, FILE_ACL_GROUP);
        ASSERT_EQ(acl->named[2].id, 4243);
        ASSERT_EQ(acl->named[2].perm, FILE_ACL_WRITE);
        ASSERT_TRUE(acl->has_mask);
        ASSERT_EQ(acl->mask, 6);
        ASSERT_EQ(file_acl_masked(acl, acl->named[2].perm), FILE_ACL_WRITE);
}

/* SECURITY: a mask without write takes it from named entries and the owning group alike. */
TEST(mask_without_write) {
        _cleanup_(file_acl_freep) FileAcl *acl = NULL;

        ASSERT_OK(PARSE(2, TA_USER_OBJ(6), TA_USER(4242, 7), TA_GROUP_OBJ(6), TA_MASK(5), TA_OTHER(0)));
        ASSERT_EQ(file_acl_masked(acl, acl->named[0].perm), 5);
        ASSERT_EQ(file_acl_masked(acl, acl->group_obj), 4);

        /* A mask alone, with no named entry, is valid too. */
        acl = file_acl_free(acl);
        ASSERT_OK(PARSE(2, TA_USER_OBJ(6), TA_GROUP_OBJ(6), TA_MASK(0), TA_OTHER(0)));
        ASSERT_EQ(file_acl_masked(acl, acl->group_obj), 0);
}

TEST(truncated_refused) {
        static const uint8_t header[] = { 2, 0, 0, 0 };
        static const uint8_t good[] = { 2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, 4, 0, 4, 0,
                                        0xff, 0xff, 0xff, 0xff, 0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff };
        FileAcl *acl = (FileAcl *) 0x1;

        ASSERT_ERRNO(file_acl_parse(header, 0, &acl), EBADMSG);
        ASSERT_ERRNO(file_acl_parse(header, 3, &acl), EBADMSG);
        /* A header and nothing else: the kernel would have said ENODATA. */
        ASSERT_ERRNO(file_acl_parse(header, 4, &acl), EBADMSG);
        for (size_t n = 5; n < sizeof(good); n++)
                ASSERT_ERRNO(file_acl_parse(good, n, &acl), EBADMSG);
        ASSERT_TRUE(acl == (FileAcl *) 0x1);

        ASSERT_OK(file_acl_parse(good, sizeof(good), &acl));
        free(acl);
        acl = (FileAcl *) 0x1;

        /* A whole ACL and part of one more entry is no ACL either. */
        {
                uint8_t longer[sizeof(good) + 7] = {};

                memcpy(longer, good, sizeof(good));
                for (size_t n = sizeof(good) + 1; n < sizeof(longer); n++)
                        ASSERT_ERRNO(file_acl_parse(longer, n, &acl), EBADMSG);
        }
        /* Three bytes are too short for a version, whatever byte follows them. */
        {
                static const uint8_t three[] = { 2, 0, 0, 1 };

                ASSERT_ERRNO(file_acl_parse(three, 3, &acl), EBADMSG);
        }
        ASSERT_TRUE(acl == (FileAcl *) 0x1);
}

TEST(wrong_version_refused) {
        FileAcl *acl = (FileAcl *) 0x1;

        ASSERT_ERRNO(PARSE(1, TA_USER_OBJ(6), TA_GROUP_OBJ(4), TA_OTHER(4)), EPROTONOSUPPORT);
        ASSERT_ERRNO(PARSE(3, TA_USER_OBJ(6), TA_GROUP_OBJ(4), TA_OTHER(4)), EPROTONOSUPPORT);
        /* Big endian. */
        ASSERT_ERRNO(PARSE(0x02000000, TA_USER_OBJ(6), TA_GROUP_OBJ(4), TA_OTHER(4)), EPROTONOSUPPORT);
        ASSERT_TRUE(acl == (FileAcl *) 0x1);
}

/* What the kernel's posix_acl_valid() would not have stored. */
#define REFUSED(...) ASSERT_ERRNO(PARSE(2, __VA_ARGS__), EBADMSG)

TEST(invalid_entries_refused) {
        FileAcl *acl = (FileAcl *) 0x1;

        /* Unknown tag, unknown permission bit. */
        REFUSED(TA_USER_OBJ(6), TA_GROUP_OBJ(4), { 0x40, 4, 0 }, TA_OTHER(4));
        REFUSED(TA_USER_OBJ(6), TA_GROUP_OBJ(0x0c), TA_OTHER(4));
        /* Missing entries. */
        REFUSED(TA_GROUP_OBJ(4), TA_OTHER(4));
        REFUSED(TA_USER_OBJ(6), TA_OTHER(4));
        REFUSED(TA_USER_OBJ(6), TA_GROUP_OBJ(4));
        /* Repeated entries, or entries after OTHER. */
        REFUSED(TA_USER_OBJ(6), TA_USER_OBJ(6), TA_GROUP_OBJ(4), TA_OTHER(4));
        REFUSED(TA_USER_OBJ(6), TA_GROUP_OBJ(4), TA_GROUP_OBJ(4), TA_OTHER(4));
        REFUSED(TA_USER_OBJ(6), TA_GROUP_OBJ(4), TA_MASK(4), TA_MASK(4), TA_OTHER(4));
        REFUSED(TA_USER_OBJ(6), TA_GROUP_OBJ(4), TA_OTHER(4), TA_OTHER(4));
        REFUSED(TA_USER_OBJ(6), TA_GROUP_OBJ(4), TA_OTHER(4), TA_USER(4242, 6));
        /* Out of order. */
        REFUSED(TA_GROUP_OBJ(4), TA_USER_OBJ(6), TA_OTHER(4));
        REFUSED(TA_USER_OBJ(6), TA_GROUP_OBJ(4), TA_USER(4242, 6), TA_MASK(6), TA_OTHER(4));
        REFUSED(TA_USER_OBJ(6), TA_GROUP(4243, 6), TA_GROUP_OBJ(4), TA_MASK(6), TA_OTHER(4));
        REFUSED(TA_USER_OBJ(6), TA_GROUP_OBJ(4), TA_OTHER(4), TA_MASK(6));
        /* SECURITY: named entries without a mask would grant unmasked. */
        REFUSED(TA_USER_OBJ(6), TA_USER(4242, 6), TA_GROUP_OBJ(4), TA_OTHER(4));
        REFUSED(TA_USER_OBJ(6), TA_GROUP_OBJ(4), TA_GROUP(4243, 6), TA_OTHER(4));
        /* A named entry for the undefined id. */
        REFUSED(TA_USER_OBJ(6), TA_USER(UINT32_MAX, 6), TA_GROUP_OBJ(4), TA_MASK(6), TA_OTHER(4));
        ASSERT_TRUE(acl == (FileAcl *) 0x1);
}

/* Whatever the kernel hands out for a real file parses, and a file without an ACL has none. */
TEST(read_real_files) {
        char dir[] = "/tmp/test-file-acl-XXXXXX";
        _cleanup_(file_acl_freep) FileAcl *acl = NULL;
        _cleanup_close_ int fd = -EBADF, dfd = -EBADF;
        _cleanup_free_ char *path = NULL;

        ASSERT_NOT_NULL(mkdtemp(dir));
        ASSERT_TRUE(asprintf(&path, "%s/f", dir) > 0);
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        ASSERT_TRUE(fd >= 0);
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_TRUE(dfd >= 0);

        acl = (FileAcl *) 0x1;
        ASSERT_EQ(file_acl_read(fd, &acl), 0);
        ASSERT_NULL(acl);

        TACL_SET(path, TA_USER_OBJ(6), TA_USER(4242, 6), TA_GROUP_OBJ(4), TA_GROUP(4243, 6), TA_MASK(4),
                 TA_OTHER(4));
        ASSERT_EQ(file_acl_read(fd, &acl), 1);
        ASSERT_EQ(acl->n_named, 2);
        ASSERT_EQ(acl->named[0].id, 4242);
        ASSERT_EQ(acl->named[1].id, 4243);
        ASSERT_EQ(acl->mask, 4);
        acl = file_acl_free(acl);

        TACL_SET(dir, TA_USER_OBJ(7), TA_GROUP_OBJ(5), TA_GROUP(4243, 7), TA_MASK(7), TA_OTHER(5));
        ASSERT_EQ(file_acl_read(dfd, &acl), 1);
        ASSERT_EQ(acl->n_named, 1);
        ASSERT_EQ(acl->named[0].perm, 7);

        ASSERT_OK(unlink(path));
        ASSERT_OK(rmdir(dir));
}

TEST_MAIN()
