/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The files that loaded well last (daemon/last-good.c): the monitor keeps exactly the bytes it
 * parsed, all or nothing, in a memfd that nobody can change afterwards, and a worker makes
 * the same configuration and policy of it, refusing one that is not sealed or not well formed.
 * Runs in: tests.
 */

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "daemon-config-trusted.h"
#include "file-trust.h"
#include "harness.h"
#include "log-capture.h"
#include "last-good.h"
#include "macro.h"

static char dir[] = "/tmp/test-last-good-XXXXXX";

static const char *path(const char *name) {
        static char buf[4][256];
        static unsigned i;
        char *p = buf[i++ % ELEMENTSOF(buf)];

        snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
        return p;
}

/* path(name), in storage of its own. */
static const char *strf_path(const char *name) {
        static char buf[256];

        snprintf(buf, sizeof(buf), "%s", path(name));
        return buf;
}

static void write_text(const char *name, const char *text) {
        FILE *f = fopen(path(name), "we");

        ASSERT_NOT_NULL(f);
        ASSERT_TRUE(fputs(text, f) >= 0);
        ASSERT_OK(fclose(f));
}

/* tsmd.conf naming policy.conf and policy.d in dir, with MaxContextsPerClient=7; the policy
 * grants 0000:01:00.0 to root, and a drop-in adds a second rule. */
static void make_files(void) {
        char conf[1024];

        snprintf(conf, sizeof(conf), "[Guest]\nMaxContextsPerClient=7\n[Policy]\nFile=%s\nDropInDirectory=%s\n",
                 path("policy.conf"), path("policy.d"));
        write_text("tsmd.conf", conf);
        write_text("policy.conf", "[Client:a]\nUsers=root\nDevices=0000:01:00.0\n");
        ASSERT_OK(mkdir(path("policy.d"), 0755));
        write_text("policy.d/10-b.conf", "[Client:b]\nUsers=65534\nDevices=*\n");
}

static void setup(void) {
        ASSERT_NOT_NULL(mkdtemp(dir));
        make_files();
}

static void cleanup(void) {
        unlink(path("policy.d/10-b.conf"));
        rmdir(path("policy.d"));
        unlink(path("policy.conf"));
        unlink(path("tsmd.conf"));
        rmdir(dir);
        strcpy(dir, "/tmp/test-last-good-XXXXXX");
}

static const PolicyFileTrust trust = { .owner = 0, .worker_gid = GID_INVALID };

/* The bytes kept, whole. */
static char *contents(int fd, size_t *ret_size) {
        struct stat st;
        char *buf;

        ASSERT_OK(fstat(fd, &st));
        buf = malloc((size_t) st.st_size + 1);
        ASSERT_NOT_NULL(buf);
        ASSERT_EQ(pread(fd, buf, (size_t) st.st_size, 0), (ssize_t) st.st_size);
        *ret_size = (size_t) st.st_size;
        return buf;
}

static void load(DaemonConfig *ret_config, Policy **ret_policy, int *ret_fd) {
        _cleanup_free_ char *error = NULL;

        ASSERT_OK(last_good_load(path("tsmd.conf"), false, &trust, ret_config, ret_policy, ret_fd, NULL, &error, NULL));
        ASSERT_NULL(error);
}

TEST(round_trip) {
        _cleanup_free_ char *names = NULL, *error = NULL;
        _cleanup_(policy_unrefp) Policy *p = NULL, *q = NULL;
        _cleanup_close_ int fd = -EBADF;
        char want[1024];
        DaemonConfig c, d;

        if (geteuid() != 0)
                SKIP("the policy files must be root's");
        setup();
        load(&c, &p, &fd);
        ASSERT_EQ(c.max_contexts_per_client, 7U);
        ASSERT_EQ(policy_n_rules(p), 2U);

        /* The worker's side makes the same of it, and names the files. */
        ASSERT_OK(last_good_restore(fd, &d, &q, &names, &error));
        ASSERT_EQ(d.max_contexts_per_client, 7U);
        ASSERT_STREQ(d.policy_file, c.policy_file);
        ASSERT_EQ(policy_n_rules(q), 2U);
        snprintf(want, sizeof(want), "'%s', '%s', '%s'", path("tsmd.conf"), path("policy.conf"),
                 path("policy.d/10-b.conf"));
        ASSERT_STREQ(names, want);

        /* Files changed on disk since are not what it holds. */
        write_text("policy.conf", "[Client:a]\nUsers=root\nDevices=*\n[Client:c]\nUsers=1\nDevices=*\n");
        daemon_config_done(&d);
        q = policy_unref(q);
        names = mfree(names);
        ASSERT_OK(last_good_restore(fd, &d, &q, &names, &error));
        ASSERT_EQ(policy_n_rules(q), 2U);

        daemon_config_done(&c);
        daemon_config_done(&d);
        cleanup();
}

/* A configuration that loads with a policy that does not, or the reverse, is kept not at all;
 * either way the caller learns why, naming the file (the worker answers with it), and whether it
 * was the policy (which the caller logs; tsmd.conf's is logged here, as ever). */
TEST(all_or_nothing) {
        _cleanup_(policy_unrefp) Policy *p = NULL;
        _cleanup_free_ char *error = NULL, *log = NULL;
        bool policy = false;
        int fd = -EBADF, saved;
        DaemonConfig c;

        if (geteuid() != 0)
                SKIP("the policy files must be root's");
        setup();

        write_text("policy.d/10-b.conf", "[Client:b]\nUsers=65534\nBogus=1\n");
        ASSERT_ERRNO(last_good_load(path("tsmd.conf"), false, &trust, &c, &p, &fd, NULL, &error, &policy), EINVAL);
        ASSERT_NOT_NULL(error);
        ASSERT_TRUE(strstr(error, "10-b.conf:3:") != NULL);
        ASSERT_TRUE(policy);
        ASSERT_EQ(fd, -EBADF);
        ASSERT_NULL(p);
        error = mfree(error);

        write_text("policy.d/10-b.conf", "[Client:b]\nUsers=65534\nDevices=*\n");
        write_text("tsmd.conf", "[Guest]\nMaxContextsPerClient=0\n");
        saved = log_capture_begin();
        ASSERT_ERRNO(last_good_load(path("tsmd.conf"), false, &trust, &c, &p, &fd, NULL, &error, &policy), ERANGE);
        log = log_capture_end(saved);
        ASSERT_NOT_NULL(error);
        if (!strstr(error, strf_path("tsmd.conf:2: value out of range for MaxContextsPerClient=")) ||
            !strstr(log, error))
                TEST_FAIL("'%s' does not name tsmd.conf:2 as the log does: %s", error, log);
        ASSERT_FALSE(policy);
        ASSERT_EQ(fd, -EBADF);
        error = mfree(error);

        /* A policy file the worker could have written is no good either. */
        cleanup();
        setup();
        ASSERT_OK(chmod(path("policy.conf"), 0666));
        ASSERT_ERRNO(last_good_load(path("tsmd.conf"), false, &trust, &c, &p, &fd, NULL, &error, &policy), EPERM);
        ASSERT_NOT_NULL(error);
        ASSERT_TRUE(strstr(error, strf_path("policy.conf: writable by every user; refusing to use it")) != NULL);
        ASSERT_TRUE(policy);
        ASSERT_EQ(fd, -EBADF);

        cleanup();
}

/* Fails with EPERM, saying "<what>; refusing to use it" in the log and in
 * daemon_config_load_trusted()'s message. */
static void expect_refused(const char *what) {
        _cleanup_(policy_unrefp) Policy *p = NULL;
        _cleanup_free_ char *error = NULL, *log = NULL, *expected = NULL;
        const char *message = NULL;
        bool policy = true;
        unsigned line = 0;
        int fd = -EBADF, saved;
        DaemonConfig c;

        ASSERT_TRUE(asprintf(&expected, "%s; refusing to use it", what) > 0);
        saved = log_capture_begin();
        ASSERT_ERRNO(last_good_load(path("tsmd.conf"), false, &trust, &c, &p, &fd, NULL, &error, &policy), EPERM);
        log = log_capture_end(saved);
        if (!strstr(log, expected))
                TEST_FAIL("the log does not say '%s': %s", expected, log);
        ASSERT_NOT_NULL(error);
        if (!strstr(error, expected))
                TEST_FAIL("'%s' does not say '%s'", error, expected);
        ASSERT_FALSE(policy); /* not the policy's */
        ASSERT_EQ(fd, -EBADF);
        ASSERT_NULL(p);
        error = mfree(error);

        ASSERT_OK(daemon_config_init(&c));
        ASSERT_ERRNO(daemon_config_load_trusted(&c, path("tsmd.conf"), &trust, &line, &message, &error), EPERM);
        ASSERT_NOT_NULL(error);
        if (!strstr(error, expected))
                TEST_FAIL("'%s' does not say '%s'", error, expected);
        daemon_config_done(&c);
}

/* SECURITY: tsmd.conf names the policy files, the directories root hands the worker and the
 * IOMMU device: it is trusted as the policy files are (file-trust.h), or not used at all. */
TEST(config_trusted_as_the_policy) {
        _cleanup_free_ char *msg = NULL;

        if (geteuid() != 0)
                SKIP("chown");
        setup();

        ASSERT_OK(chown(path("tsmd.conf"), 4242, 0));
        ASSERT_TRUE(asprintf(&msg, "%s: owned by uid 4242, which is neither root nor the daemon's user",
                             path("tsmd.conf")) > 0);
        expect_refused(msg);
        ASSERT_OK(chown(path("tsmd.conf"), 0, 0));

        ASSERT_OK(chmod(path("tsmd.conf"), 0666));
        msg = mfree(msg);
        ASSERT_TRUE(asprintf(&msg, "%s: writable by every user", path("tsmd.conf")) > 0);
        expect_refused(msg);
        ASSERT_OK(chmod(path("tsmd.conf"), 0644));

        /* The worker's group. */
        {
                const PolicyFileTrust worker = { .owner = 0, .worker_gid = 4243 };
                _cleanup_(policy_unrefp) Policy *p = NULL;
                _cleanup_free_ char *error = NULL;
                int fd = -EBADF;
                DaemonConfig c;

                ASSERT_OK(chown(path("tsmd.conf"), 0, 4243));
                ASSERT_OK(chmod(path("tsmd.conf"), 0664));
                ASSERT_ERRNO(last_good_load(path("tsmd.conf"), false, &worker, &c, &p, &fd, NULL, &error, NULL), EPERM);
                error = mfree(error);
                ASSERT_OK(chmod(path("tsmd.conf"), 0644));
                ASSERT_OK(last_good_load(path("tsmd.conf"), false, &worker, &c, &p, &fd, NULL, &error, NULL));
                daemon_config_done(&c);
                safe_close(fd);
                ASSERT_OK(chown(path("tsmd.conf"), 0, 0));
        }

        /* A directory on the way others can write: they could put another file in its place. */
        ASSERT_OK(chown(dir, 0, 4244));
        ASSERT_OK(chmod(dir, 0775));
        msg = mfree(msg);
        ASSERT_TRUE(asprintf(&msg, "%s: directory %s is writable by group 4244", path("tsmd.conf"), dir) > 0);
        expect_refused(msg);
        ASSERT_OK(chmod(dir, 0700));

        /* An optional file that is not there is still the defaults. */
        {
                _cleanup_(policy_unrefp) Policy *p = NULL;
                _cleanup_free_ char *error = NULL;
                int fd = -EBADF;
                DaemonConfig c;

                ASSERT_OK(unlink(path("tsmd.conf")));
                ASSERT_OK(last_good_load(path("tsmd.conf"), true, &trust, &c, &p, &fd, NULL, &error, NULL));
                daemon_config_done(&c);
                safe_close(fd);
        }
        cleanup();
}

/* SECURITY: nobody holding the fd, a worker or root, changes what the next worker gets. */
TEST(sealed_for_good) {
        _cleanup_free_ char *before = NULL, *after = NULL;
        _cleanup_(policy_unrefp) Policy *p = NULL;
        _cleanup_close_ int fd = -EBADF, rw = -EBADF;
        size_t n_before, n_after;
        char proc[64];
        DaemonConfig c;
        void *map;

        if (geteuid() != 0)
                SKIP("the policy files must be root's");
        setup();
        load(&c, &p, &fd);
        before = contents(fd, &n_before);

        ASSERT_EQ(pwrite(fd, "X", 1, 0), -1);
        ASSERT_EQ(errno, EPERM);
        ASSERT_EQ(ftruncate(fd, 0), -1);
        ASSERT_EQ(errno, EPERM);
        ASSERT_EQ(ftruncate(fd, (off_t) n_before + 4096), -1);
        ASSERT_EQ(errno, EPERM);
        ASSERT_EQ(fallocate(fd, 0, 0, (off_t) n_before + 4096), -1);
        map = mmap(NULL, n_before, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ASSERT_TRUE(map == MAP_FAILED);
        ASSERT_EQ(fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE), -1); /* F_SEAL_SEAL: no more changes */
        ASSERT_EQ(errno, EPERM);
        /* Opened anew, through /proc, it is the same sealed file. */
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        rw = open(proc, O_RDWR | O_CLOEXEC);
        if (rw >= 0) {
                ASSERT_EQ(write(rw, "X", 1), -1);
                ASSERT_EQ(errno, EPERM);
        }

        after = contents(fd, &n_after);
        ASSERT_EQ(n_after, n_before);
        ASSERT_TRUE(memcmp(before, after, n_before) == 0);
        daemon_config_done(&c);
        cleanup();
}

static int memfd_with(const char *data, size_t size, unsigned seals) {
        int fd = memfd_create("test", MFD_CLOEXEC | MFD_ALLOW_SEALING);

        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, data, size), (ssize_t) size);
        if (seals)
                ASSERT_OK(fcntl(fd, F_ADD_SEALS, seals));
        return fd;
}

#define SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)
#define GOOD "\0\0policy.conf\0[Client:a]\nUsers=root\nDevices=*\n"
/* GOOD with the resolved names (last-good.h), and its size */
#define WITH_NAMES(names) GOOD "\0\0" names, sizeof(GOOD "\0\0" names)

/* A worker starts from nothing but what the monitor sealed, and well formed. */
TEST(restore_refuses_unsealed_or_malformed) {
        static const struct {
                const char *data;
                size_t size;
                unsigned seals;
                int error;
        } cases[] = {
                { GOOD, sizeof(GOOD), SEALS, 0 },
                { WITH_NAMES("user root 0\n"), SEALS, 0 }, /* root resolved */
                { GOOD, sizeof(GOOD), 0, EPERM },
                { GOOD, sizeof(GOOD), F_SEAL_SHRINK | F_SEAL_GROW, EPERM },
                { GOOD, sizeof(GOOD), F_SEAL_WRITE, EPERM },
                { "", 0, SEALS, EBADMSG },
                { GOOD, sizeof(GOOD) - 1, SEALS, EBADMSG },  /* no final NUL */
                { "\0\0name\0", 7, SEALS, EBADMSG },          /* a name without its text */
                { "\0text\0", 6, SEALS, EBADMSG },            /* text of no configuration file */
                { "\0\0\0text\0", 8, SEALS, EBADMSG },        /* resolved names that are none */
                /* A policy file without a name, unless last (the resolved names). */
                { "\0\0\0\0p\0[Client:a]\nUsers=0\n", sizeof("\0\0\0\0p\0[Client:a]\nUsers=0\n"), SEALS, EBADMSG },
                /* Resolved names, strictly as written. */
                { WITH_NAMES("user root 0"), SEALS, EBADMSG }, /* unterminated */
                { WITH_NAMES("person root 0\n"), SEALS, EBADMSG },
                { WITH_NAMES("user root\n"), SEALS, EBADMSG },
                { WITH_NAMES("user root 4294967295\n"), SEALS, EBADMSG },
                { WITH_NAMES("user 0 0\n"), SEALS, EBADMSG },
                { WITH_NAMES("user root 0\nuser root 1\n"), SEALS, EBADMSG },
                /* Names resolved, but not the one the policy names: unknown, not asked of NSS. */
                { WITH_NAMES("group root 0\n"), SEALS, ENOENT },
                { WITH_NAMES(""), SEALS, ENOENT },
                { "c\0[Guest]\nBogus=1\n\0", 19, SEALS, EINVAL },
                { "\0\0p\0[Client:a]\nDevices=*\n\0", 26, SEALS, EINVAL }, /* no identity key */
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *names = NULL, *error = NULL;
                _cleanup_close_ int fd = memfd_with(cases[i].data, cases[i].size, cases[i].seals);
                Policy *p = NULL;
                DaemonConfig c;
                int r;

                r = last_good_restore(fd, &c, &p, &names, &error);
                if (cases[i].error == 0) {
                        ASSERT_OK(r);
                        ASSERT_STREQ(names, "'policy.conf'");
                        ASSERT_EQ(policy_n_rules(p), 1U);
                        policy_unref(p);
                        daemon_config_done(&c);
                } else {
                        ASSERT_ERRNO(r, cases[i].error);
                        ASSERT_NULL(p);
                        ASSERT_NULL(names);
                }
        }
}

/* A kept set restores as it was loaded: Users=/Groups= names as they were resolved then, asking
 * the name services nothing, which may answer otherwise by now (a user deleted, or recreated
 * under another uid) or answer the sandboxed worker otherwise than the monitor (LDAP). */
TEST(restore_resolves_no_names) {
        static const char policy[] = "p.conf\0[Client:a]\nUsers=root tsmd-test-no-such-user\nDevices=*\n"
                                     "[Client:b]\nGroups=root\nDevices=*\n";
        static const char tail[] = "\0\0user root 0\ngroup root 0\n";
        static const char names[] = "user root 4321\nuser tsmd-test-no-such-user 4322\ngroup root 4323\n";
        PeerIdentity uid0 = { .uid = 0, .gid = 7 }, uid4321 = { .uid = 4321, .gid = 7 },
                     uid4322 = { .uid = 4322, .gid = 7 }, gid4323 = { .uid = 7, .gid = 4323 },
                     gid0 = { .uid = 7, .gid = 0 };
        _cleanup_free_ char *data = NULL, *list = NULL, *error = NULL;
        _cleanup_(policy_unrefp) Policy *p = NULL, *q = NULL;
        _cleanup_close_ int fd = -EBADF, kept = -EBADF;
        size_t size;
        DaemonConfig c;

        size = 2 + sizeof(policy) + 1 + sizeof(names);
        data = malloc(size);
        ASSERT_NOT_NULL(data);
        memcpy(data, "\0\0", 2);
        memcpy(data + 2, policy, sizeof(policy));
        data[2 + sizeof(policy)] = 0;
        memcpy(data + 3 + sizeof(policy), names, sizeof(names));
        fd = memfd_with(data, size, SEALS);

        ASSERT_OK(last_good_restore(fd, &c, &p, &list, &error));
        ASSERT_STREQ(list, "'p.conf'");
        ASSERT_OK(policy_check_device(p, &uid4321, "0000:01:00.0", TSM_BACKEND_EMULATED, NULL));
        ASSERT_OK(policy_check_device(p, &uid4322, "0000:01:00.0", TSM_BACKEND_EMULATED, NULL));
        ASSERT_OK(policy_check_device(p, &gid4323, "0000:01:00.0", TSM_BACKEND_EMULATED, NULL));
        ASSERT_ERRNO(policy_check_device(p, &uid0, "0000:01:00.0", TSM_BACKEND_EMULATED, NULL), EPERM);
        ASSERT_ERRNO(policy_check_device(p, &gid0, "0000:01:00.0", TSM_BACKEND_EMULATED, NULL), EPERM);
        daemon_config_done(&c);

        /* What a load keeps: the names it resolved, each once, after the files. */
        if (geteuid() != 0)
                SKIP("the policy files must be root's");
        setup();
        write_text("policy.conf", "[Client:a]\nUsers=root 0 root\nDevices=0000:01:00.0\n"
                                  "[Client:c]\nGroups=root\nUsers=root\nDevices=*\n");
        load(&c, &q, &kept);
        daemon_config_done(&c);
        data = mfree(data);
        data = contents(kept, &size);
        ASSERT_TRUE(size > sizeof(tail));
        ASSERT_TRUE(memcmp(data + size - sizeof(tail), tail, sizeof(tail)) == 0); /* with its NUL */
        cleanup();
}

/* A set kept by a tsmd before the resolved names (in the fd store at an upgrade) restores as
 * that tsmd restored it, through NSS. */
TEST(restore_of_a_set_without_resolved_names) {
        static const char old[] = "\0\0p.conf\0[Client:a]\nUsers=root\nDevices=*\n";
        static const char unknown[] = "\0\0p.conf\0[Client:a]\nUsers=tsmd-test-no-such-user\nDevices=*\n";
        PeerIdentity uid0 = { .uid = 0, .gid = 0 };
        _cleanup_free_ char *list = NULL, *error = NULL;
        _cleanup_(policy_unrefp) Policy *p = NULL, *q = NULL;
        _cleanup_close_ int fd = memfd_with(old, sizeof(old), SEALS),
                            fd_unknown = memfd_with(unknown, sizeof(unknown), SEALS);
        DaemonConfig c;

        ASSERT_OK(last_good_restore(fd, &c, &p, &list, &error));
        ASSERT_OK(policy_check_device(p, &uid0, "0000:01:00.0", TSM_BACKEND_EMULATED, NULL));
        daemon_config_done(&c);
        list = mfree(list);
        ASSERT_ERRNO(last_good_restore(fd_unknown, &c, &q, &list, &error), ENOENT);
        ASSERT_STREQ(error, "p.conf:2: unknown user 'tsmd-test-no-such-user'");
}

/* A set a tsmd before kept, with what that tsmd allowed and meant: the first start after an
 * upgrade over files this tsmd refuses serves it (refusing it would exit 78 and release the fd
 * store's contexts), a rule that matches by Units= globs alone dropped, failing closed, and an
 * empty [Defaults] Scopes= the built-in scopes, as it meant then. The same text loaded anew is
 * refused, and its empty Scopes= means none. */
TEST(a_set_kept_before_keeps_its_meanings) {
        static const char old[] = "\0\0p.conf\0[Defaults]\nScopes=\n"
                                  "[Client:by-glob]\nUnits=qemu-*.service\nDevices=*\n"
                                  "[Client:a]\nUsers=root\nDevices=0000:01:00.0\n";
        static const char now[] = "[Defaults]\nScopes=\n[Client:a]\nUsers=root\nDevices=0000:01:00.0\n";
        PeerIdentity uid0 = { .uid = 0, .gid = 0 }, unit = { .uid = 1000, .gid = 1000, .unit = (char *) "qemu-a.service" };
        PolicySource src = { .name = "p.conf", .text = old + 2 + sizeof("p.conf") };
        _cleanup_free_ char *list = NULL, *error = NULL, *error_now = NULL;
        _cleanup_(policy_unrefp) Policy *p = NULL, *q = NULL, *r = NULL;
        _cleanup_close_ int fd = memfd_with(old, sizeof(old), SEALS);
        DaemonConfig c;

        ASSERT_OK(last_good_restore(fd, &c, &p, &list, &error));
        daemon_config_done(&c);
        ASSERT_EQ(policy_n_rules(p), 1u);
        ASSERT_ERRNO(policy_check_device(p, &unit, "0000:02:00.0", TSM_BACKEND_EMULATED, NULL), EPERM);
        ASSERT_OK(policy_check_scope(p, &uid0, "0000:01:00.0", TSM_BACKEND_EMULATED, "info", NULL));
        ASSERT_OK(policy_check_scope(p, &uid0, "0000:01:00.0", TSM_BACKEND_EMULATED, "state-change", NULL));

        ASSERT_ERRNO(policy_load_from_text(&src, 1, &q, &error_now), EINVAL);
        src.text = now;
        ASSERT_OK(policy_load_from_text(&src, 1, &r, &error_now));
        ASSERT_ERRNO(policy_check_scope(r, &uid0, "0000:01:00.0", TSM_BACKEND_EMULATED, "info", NULL), EPERM);
}

TEST_MAIN();
