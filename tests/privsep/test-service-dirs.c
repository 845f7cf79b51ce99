/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The worker's directories under the capabilities tsmd.service gives tsmd (its
 * CapabilityBoundingSet=, read from the unit as built): worker_dir_prepare() takes the
 * directories tsmd.tmpfiles makes as they are, makes a missing one, and takes over one an
 * older tsmd left as root's, all without CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH or
 * CAP_FOWNER. End to end: the real tsmd starts under setpriv with the unit's bounding set, and
 * serves (its worker sandboxed, restarted, reloaded) under the unit's SystemCallFilter=.
 * Runs in: tests. Needs root; SKIPs otherwise.
 */

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <sys/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include "capability.h"
#include "config.h"
#include "syscall-table.h"
#include "guest-calls.h"
#include "tsmd-fixture.h"
#include "worker-spawn.h"

#ifndef TSMD_SERVICE_PATH
#error "TSMD_SERVICE_PATH must be defined (the tsmd.service meson configured)"
#endif
#ifndef TSMD_TMPFILES_PATH
#error "TSMD_TMPFILES_PATH must be defined (tsmd.tmpfiles)"
#endif

static uid_t worker_uid;
static gid_t worker_gid, admin_gid;

static void need_root_and_worker(void) {
        struct passwd *pw;
        struct group *gr;

        if (geteuid() != 0)
                SKIP("needs root (tsmd runs as root with the unit's capabilities)");
        pw = getpwnam(TSMD_WORKER_USER);
        if (!pw)
                SKIP("no user '%s'", TSMD_WORKER_USER);
        worker_uid = pw->pw_uid;
        worker_gid = pw->pw_gid;
        gr = getgrnam("tsm-admin");
        admin_gid = gr ? gr->gr_gid : 65534;
}

/* The unit's CapabilityBoundingSet=, as libcap values. */
static size_t unit_capabilities(cap_value_t caps[static CAP_LAST_CAP + 1]) {
        _cleanup_free_ char *unit = read_file(TSMD_SERVICE_PATH);
        char *line, *word, *save = NULL;
        size_t n = 0;

        ASSERT_NOT_NULL(unit);
        line = strstr(unit, "\nCapabilityBoundingSet=");
        ASSERT_NOT_NULL(line);
        line += strlen("\nCapabilityBoundingSet=");
        line[strcspn(line, "\n")] = 0;
        for (word = strtok_r(line, " ", &save); word; word = strtok_r(NULL, " ", &save)) {
                for (char *p = word; *p; p++)
                        *p = (char) tolower((unsigned char) *p);
                if (cap_from_name(word, &caps[n]) < 0)
                        TEST_FAIL("unknown capability '%s' in %s", word, TSMD_SERVICE_PATH);
                n++;
        }
        ASSERT_TRUE(n > 0);
        return n;
}

/* setpriv's --bounding-set= for the unit's CapabilityBoundingSet= (without the "cap_" prefixes). */
static const char *unit_bounding_set_arg(void) {
        cap_value_t caps[CAP_LAST_CAP + 1];
        char arg[1024] = "--bounding-set=-all";
        size_t n = unit_capabilities(caps);

        for (size_t i = 0; i < n; i++) {
                char *name = cap_to_name(caps[i]);

                ASSERT_NOT_NULL(name);
                snprintf(arg + strlen(arg), sizeof(arg) - strlen(arg), ",+%s",
                         strncmp(name, "cap_", 4) == 0 ? name + 4 : name);
                cap_free(name);
        }
        return strf("%s", arg);
}

/* This process as systemd starts tsmd.service: root, no supplementary groups, umask 0077,
 * the unit's bounding set, and of the rest only what is in it. */
static void become_the_unit(void) {
        cap_value_t caps[CAP_LAST_CAP + 1];
        size_t n = unit_capabilities(caps);
        _cleanup_(cap_freep) cap_t want = cap_init();

        ASSERT_NOT_NULL(want);
        ASSERT_TRUE(setgroups(0, NULL) == 0);
        umask(0077);
        for (cap_value_t c = 0; c <= CAP_LAST_CAP; c++) {
                bool keep = false;

                for (size_t i = 0; i < n; i++)
                        keep = keep || caps[i] == c;
                if (!keep && CAP_IS_SUPPORTED(c))
                        ASSERT_TRUE(prctl(PR_CAPBSET_DROP, c, 0, 0, 0) == 0);
        }
        /* Of those, what we have (a container may withhold some, as from the service manager). */
        for (size_t i = 0; i < n; i++)
                if (prctl(PR_CAPBSET_READ, caps[i], 0, 0, 0) == 1) {
                        ASSERT_TRUE(cap_set_flag(want, CAP_PERMITTED, 1, &caps[i], CAP_SET) == 0);
                        ASSERT_TRUE(cap_set_flag(want, CAP_EFFECTIVE, 1, &caps[i], CAP_SET) == 0);
                }
        ASSERT_TRUE(cap_set_proc(want) == 0);
        /* Self-check: root, but no way around file permissions. */
        ASSERT_TRUE(access("/proc/self", F_OK) == 0);
        ASSERT_TRUE(prctl(PR_CAPBSET_READ, CAP_DAC_OVERRIDE, 0, 0, 0) == 0);
}

static void make_dir(const char *path, mode_t mode, uid_t uid, gid_t gid) {
        ASSERT_TRUE(mkdir(path, mode) == 0);
        ASSERT_TRUE(chmod(path, mode) == 0);
        ASSERT_TRUE(chown(path, uid, gid) == 0);
}

static void assert_owned(const char *path, uid_t uid, gid_t gid, mode_t mode) {
        struct stat st;

        if (stat(path, &st) < 0)
                TEST_FAIL("stat %s: %s", path, strerror(errno));
        if (st.st_uid != uid || st.st_gid != gid || (st.st_mode & 07777) != mode)
                TEST_FAIL("%s: %u:%u %04o, expected %u:%u %04o", path, (unsigned) st.st_uid, (unsigned) st.st_gid,
                          (unsigned) (st.st_mode & 07777), (unsigned) uid, (unsigned) gid, (unsigned) mode);
}

/* Runs f in a child that is tsmd as the unit starts it; f's assertions fail the test. */
static void as_the_unit(void (*f)(const char *dir), const char *dir) {
        int status;
        pid_t pid;

        fflush(NULL);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                become_the_unit();
                f(dir);
                _exit(0);
        }
        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                TEST_FAIL("as the unit: failed (see above)");
}

static void prepare_ok_full(const char *path, bool private_dir) {
        int r = worker_dir_prepare(path, private_dir, worker_uid, worker_gid);

        if (r < 0)
                TEST_FAIL("worker_dir_prepare('%s') under the unit's capabilities: %s", path, strerror(-r));
}

static void prepare_ok(const char *path) {
        prepare_ok_full(path, false);
}

static void prepare_tmpfiles_dirs(const char *dir) {
        prepare_ok(strf("%s/var/log/tsmd", dir));
        prepare_ok_full(strf("%s/run/tsmd/contexts", dir), true);
}

/* tsmd.tmpfiles itself, its paths moved into a scratch directory, then tsmd as the unit: the
 * directories are taken as they are, the audit directory keeps its group (tsm-admin), and an
 * audit file an older tsmd wrote as root is the worker's. */
TEST(tmpfiles_dirs_as_the_unit) {
        const char *dir, *conf, *tmpfiles;
        _cleanup_free_ char *text = NULL, *out = NULL, *err = NULL;
        int status;

        need_root_and_worker();
        if (access("/usr/bin/systemd-tmpfiles", X_OK) < 0 && access("/bin/systemd-tmpfiles", X_OK) < 0)
                SKIP("no systemd-tmpfiles");
        tmpfiles = access("/usr/bin/systemd-tmpfiles", X_OK) == 0 ? "/usr/bin/systemd-tmpfiles" : "/bin/systemd-tmpfiles";
        dir = scratch_dir();

        /* What an unseparated tsmd left: its directory and a log, root's. */
        ASSERT_TRUE(mkdir(strf("%s/var", dir), 0755) == 0);
        ASSERT_TRUE(mkdir(strf("%s/var/log", dir), 0755) == 0);
        ASSERT_TRUE(mkdir(strf("%s/run", dir), 0755) == 0);
        make_dir(strf("%s/var/log/tsmd", dir), 0750, 0, admin_gid);
        write_file(strf("%s/var/log/tsmd/audit.log", dir), "old\n");
        ASSERT_TRUE(chmod(strf("%s/var/log/tsmd/audit.log", dir), 0600) == 0);

        text = read_file(TSMD_TMPFILES_PATH);
        ASSERT_NOT_NULL(text);
        {
                /* Every absolute path into the scratch directory. */
                size_t extra = 0;
                char *moved, *q;

                for (const char *p = text; *p; p++)
                        extra += (*p == ' ' && p[1] == '/') ? strlen(dir) : 0;
                moved = malloc(strlen(text) + extra + 1);
                ASSERT_NOT_NULL(moved);
                q = moved;
                for (const char *p = text; *p; p++) {
                        *q++ = *p;
                        if (*p == ' ' && p[1] == '/')
                                q = stpcpy(q, dir);
                }
                *q = 0;
                conf = strf("%s/tsmd-tmpfiles.conf", dir);
                write_file(conf, moved);
                free(moved);
        }
        status = run_capture((const char *[]){ tmpfiles, "--create", conf, NULL }, &out, &err, TSMD_WAIT_USEC);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                TEST_FAIL("systemd-tmpfiles --create: %s%s", out, err);

        as_the_unit(prepare_tmpfiles_dirs, dir);
        assert_owned(strf("%s/var/log/tsmd", dir), worker_uid, admin_gid, 02750);
        assert_owned(strf("%s/run/tsmd/contexts", dir), worker_uid, worker_gid, 0700);
        assert_owned(strf("%s/var/log/tsmd/audit.log", dir), worker_uid, 0, 0600);
}

/* A directory named in tsmd.conf that does not exist yet: made, and the worker's. */
static void prepare_missing(const char *dir) {
        prepare_ok(strf("%s/audit", dir));
}

TEST(missing_dir_as_the_unit) {
        const char *dir;

        need_root_and_worker();
        dir = scratch_dir();
        as_the_unit(prepare_missing, dir);
        assert_owned(strf("%s/audit", dir), worker_uid, worker_gid, 0700); /* 0750 & ~umask 0077 */
}

/* SECURITY: a directory of somebody else's that holds anything (a shared /var/log or /etc named
 * in tsmd.conf by mistake, or an older tsmd's, which is tsmd.tmpfiles' to hand over) is refused,
 * and neither it nor its files change hands or mode; an empty one is taken; a symlink is
 * refused. */
static void prepare_old(const char *dir) {
        ASSERT_EQ(worker_dir_prepare(strf("%s/old", dir), false, worker_uid, worker_gid), -ENOTEMPTY);
        ASSERT_EQ(worker_dir_prepare(strf("%s/shared", dir), true, worker_uid, worker_gid), -ENOTEMPTY);
        prepare_ok(strf("%s/empty", dir));
        ASSERT_TRUE(worker_dir_prepare(strf("%s/link", dir), false, worker_uid, worker_gid) == -ENOTDIR);
}

TEST(root_owned_dir_as_the_unit) {
        const char *dir;

        need_root_and_worker();
        dir = scratch_dir();
        make_dir(strf("%s/old", dir), 0550, 0, 0);
        write_file(strf("%s/old/audit.log", dir), "old\n");
        ASSERT_TRUE(chmod(strf("%s/old/audit.log", dir), 0600) == 0);
        make_dir(strf("%s/shared", dir), 0755, 0, 0);
        make_dir(strf("%s/shared/sub", dir), 0755, 0, 0);
        write_file(strf("%s/shared/passwd", dir), "root:x:0:0::/root:/bin/sh\n");
        ASSERT_TRUE(chmod(strf("%s/shared/passwd", dir), 0644) == 0);
        make_dir(strf("%s/empty", dir), 0550, 0, 0);
        ASSERT_TRUE(symlink(strf("%s/empty", dir), strf("%s/link", dir)) == 0);

        as_the_unit(prepare_old, dir);
        assert_owned(strf("%s/old", dir), 0, 0, 0550);
        assert_owned(strf("%s/old/audit.log", dir), 0, 0, 0600);
        assert_owned(strf("%s/shared", dir), 0, 0, 0755);
        assert_owned(strf("%s/shared/passwd", dir), 0, 0, 0644);
        assert_owned(strf("%s/empty", dir), worker_uid, worker_gid, 0750);
}

/* In a mount namespace of its own, with passwd bind-mounted over /etc/passwd: what
 * worker_user_lookup() says of name (1 + its errno: the child's exit status; 0 if it takes it,
 * with the ids from passwd, 100 otherwise). */
static int lookup_in(const char *passwd, const char *name, uid_t want_uid, gid_t want_gid) {
        pid_t pid = fork();
        int status;

        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                uid_t uid = 0;
                gid_t gid = 0;
                int r;

                if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
                    mount(passwd, "/etc/passwd", NULL, MS_BIND, NULL) < 0)
                        _exit(99);
                r = worker_user_lookup(name, &uid, &gid);
                if (r < 0)
                        _exit(1 + (-r & 0x3f));
                _exit(uid == want_uid && gid == want_gid ? 0 : 100);
        }
        ASSERT_TRUE(waitpid(pid, &status, 0) == pid && WIFEXITED(status));
        return WEXITSTATUS(status);
}

/* SECURITY: the worker's user is not root's by its group either: gid 0 would give the process
 * that parses what VMMs send whatever root's group may read or write. Refused as uid 0 is. */
TEST(worker_user_of_root_group_is_refused) {
        const char *dir, *passwd;
        char line[1024];
        FILE *in, *out;

        need_root_and_worker();
        dir = scratch_dir();
        passwd = strf("%s/passwd", dir);
        in = fopen("/etc/passwd", "re");
        out = fopen(passwd, "we");
        ASSERT_NOT_NULL(in);
        ASSERT_NOT_NULL(out);
        while (fgets(line, sizeof(line), in))
                fputs(line, out);
        fputs("tsmd-test-group0:x:4242:0::/:/usr/sbin/nologin\n"
              "tsmd-test-own:x:4243:4243::/:/usr/sbin/nologin\n", out);
        fclose(in);
        ASSERT_TRUE(fclose(out) == 0);

        ASSERT_EQ(lookup_in(passwd, "tsmd-test-own", 4243, 4243), 0);
        ASSERT_EQ(lookup_in(passwd, "tsmd-test-group0", 4242, 0), 1 + EPERM);
        ASSERT_EQ(lookup_in(passwd, "root", 0, 0), 1 + EPERM);
}

/* SECURITY: after its start the monitor has no CAP_CHOWN: a reload naming a directory that is not
 * the worker's (ContextStateDirectory=/etc, or an empty one) changes nothing, its mode included,
 * rather than make it 0700 and then fail to give it. */
static void prepare_without_chown(const char *dir) {
        _cleanup_(cap_freep) cap_t caps = cap_get_proc();
        cap_value_t chown_cap = CAP_CHOWN;

        ASSERT_NOT_NULL(caps);
        ASSERT_TRUE(cap_set_flag(caps, CAP_EFFECTIVE, 1, &chown_cap, CAP_CLEAR) == 0);
        ASSERT_TRUE(cap_set_proc(caps) == 0);
        ASSERT_EQ(worker_dir_prepare(strf("%s/state", dir), true, worker_uid, worker_gid), -EPERM);
        ASSERT_EQ(worker_dir_prepare(strf("%s/audit", dir), false, worker_uid, worker_gid), -EPERM);
}

TEST(no_mode_change_without_chown) {
        const char *dir;

        need_root_and_worker();
        dir = scratch_dir();
        make_dir(strf("%s/state", dir), 0755, 0, 0);
        make_dir(strf("%s/audit", dir), 0550, 0, 0);

        as_the_unit(prepare_without_chown, dir);
        assert_owned(strf("%s/state", dir), 0, 0, 0755);
        assert_owned(strf("%s/audit", dir), 0, 0, 0550);
}

/* The context state directory, whose file names are reclaim tokens: one that is not the
 * worker's yet is made exactly 0700 before it is given, whatever it was (an admin's 0755, named
 * in ContextStateDirectory=) and whatever the umask when it is made. */
static void prepare_state_dirs(const char *dir) {
        prepare_ok_full(strf("%s/state-0755", dir), true);
        prepare_ok_full(strf("%s/state-2775", dir), true);
        umask(0022); /* tsmd started by hand */
        prepare_ok_full(strf("%s/state-new", dir), true);
}

TEST(state_dir_made_private_as_the_unit) {
        const char *dir;

        need_root_and_worker();
        dir = scratch_dir();
        make_dir(strf("%s/state-0755", dir), 0755, 0, 0);
        make_dir(strf("%s/state-2775", dir), 02775, 0, admin_gid);

        as_the_unit(prepare_state_dirs, dir);
        assert_owned(strf("%s/state-0755", dir), worker_uid, worker_gid, 0700);
        assert_owned(strf("%s/state-2775", dir), worker_uid, worker_gid, 0700);
        assert_owned(strf("%s/state-new", dir), worker_uid, worker_gid, 0700);
}

/* A worker (compromised, say) that made its directory searchable and put a hard link to a
 * file of root's in it gets nothing from the next start: a directory that is the worker's
 * already has its files left alone, and one that is not and holds anything is not taken. */
static void prepare_linked(const char *dir) {
        prepare_ok(strf("%s/mine", dir));
        ASSERT_EQ(worker_dir_prepare(strf("%s/old", dir), false, worker_uid, worker_gid), -ENOTEMPTY);
}

TEST(hard_links_are_not_given_away) {
        const char *dir;

        need_root_and_worker();
        dir = scratch_dir();
        write_file(strf("%s/secret", dir), "root's\n");
        ASSERT_TRUE(chmod(strf("%s/secret", dir), 0600) == 0);
        make_dir(strf("%s/mine", dir), 0755, worker_uid, worker_gid);
        ASSERT_TRUE(link(strf("%s/secret", dir), strf("%s/mine/audit.log", dir)) == 0);
        make_dir(strf("%s/old", dir), 0750, 0, 0);
        ASSERT_TRUE(link(strf("%s/secret", dir), strf("%s/old/audit.log", dir)) == 0);

        as_the_unit(prepare_linked, dir);
        assert_owned(strf("%s/secret", dir), 0, 0, 0600);
        assert_owned(strf("%s/old", dir), 0, 0, 0750);
}

/* The real tsmd as the unit runs it (setpriv: the unit's bounding set, no-new-privileges, no
 * groups, umask 0077), its directories made as tsmd.tmpfiles makes them: it starts, keeps
 * contexts, writes its audit log (which tsm-admin may read), and says nothing about the
 * directories (the context state one it locks). */
TEST(daemon_starts_as_the_unit) {
        const char *bounding = unit_bounding_set_arg();
        const char *script;
        Tsmd t;

        need_root_and_worker();
        if (access("/usr/bin/setpriv", X_OK) < 0)
                SKIP("no setpriv (util-linux)");
        if (tsmd_under_valgrind())
                SKIP("setpriv in front of valgrind is not this test's business");

        /* $0 is the socket's path in tsmd's directory; tmpfiles' work, then tsmd in place. */
        script = strf("d=${0%%/*} && umask 077 && "
                      "mkdir -m 2750 \"$d/audit\" && chown %u:%u \"$d/audit\" && chmod 2750 \"$d/audit\" && "
                      "mkdir -m 0700 \"$d/contexts\" && chown %u:%u \"$d/contexts\" && "
                      "exec /usr/bin/setpriv --clear-groups --no-new-privs --inh-caps=-all %s \"$@\" "
                      "--socket=\"$0\" --guest-socket=\"$d/io.tsmd.Guest\"",
                      (unsigned) worker_uid, (unsigned) admin_gid, (unsigned) worker_uid, (unsigned) worker_gid,
                      bounding);
        tsmd_start(&t, &(TsmdOptions){
                               .wrapper = (const char *const[]){ "/bin/sh", "-c", script, "@SOCKET@", NULL },
                       });
        ASSERT_FALSE(tsmd_log_contains(&t, "Cannot give"));
        ASSERT_FALSE(tsmd_log_contains(&t, "keeps no state then"));
        ASSERT_FALSE(tsmd_log_contains(&t, "refusing to keep contexts"));
        /* Root without CAP_DAC_OVERRIDE may not read the context state directory: locked as its
         * owner (dir-lock.h). */
        ASSERT_FALSE(tsmd_log_contains(&t, "Cannot lock"));
        {
                _cleanup_(varlink_client_freep) VarlinkClient *c = tsmd_connect_guest(&t);

                ASSERT_TRUE(guest_open_context(c) >= 0);
        }
        assert_owned(strf("%s/audit", t.dir), worker_uid, admin_gid, 02750);
        /* For the administrators to read, whatever the unit's umask (0077). */
        assert_owned(strf("%s/audit/audit.log", t.dir), worker_uid, admin_gid, 0640);
        assert_owned(strf("%s/contexts", t.dir), worker_uid, worker_gid, 0700);
        ASSERT_TRUE(tsmd_audit_last_seq(&t) > 0);
        tsmd_teardown(&t);
}

/* The real tsmd as the unit runs it, its context state directory left readable by others: one
 * that is the worker's already (given as it was by an older tsmd, or made so by an admin), whose
 * mode the monitor cannot change without CAP_FOWNER, is made 0700 by the worker, which owns it;
 * one that is root's (an admin's, named in ContextStateDirectory=) by the monitor before it gives
 * it. Either way the state file a context gets is 0600, and nobody else may list the tokens. */
static void run_state_dir_readable(bool the_workers) {
        const char *bounding = unit_bounding_set_arg();
        const char *script, *state;
        VarlinkClient *c;
        struct dirent *de;
        uid_t owner;
        gid_t group;
        DIR *d;
        unsigned n_files = 0;
        Tsmd t;

        need_root_and_worker();
        if (access("/usr/bin/setpriv", X_OK) < 0)
                SKIP("no setpriv (util-linux)");
        if (tsmd_under_valgrind())
                SKIP("setpriv in front of valgrind is not this test's business");
        owner = the_workers ? worker_uid : 0;
        group = the_workers ? worker_gid : 0;

        script = strf("d=${0%%/*} && umask 077 && "
                      "mkdir -m 0750 \"$d/audit\" && chown %u:%u \"$d/audit\" && "
                      "mkdir \"$d/contexts\" && chmod 0755 \"$d/contexts\" && chown %u:%u \"$d/contexts\" && "
                      "exec /usr/bin/setpriv --clear-groups --no-new-privs --inh-caps=-all %s \"$@\" "
                      "--socket=\"$0\" --guest-socket=\"$d/io.tsmd.Guest\"",
                      (unsigned) worker_uid, (unsigned) admin_gid, (unsigned) owner, (unsigned) group, bounding);
        tsmd_start(&t, &(TsmdOptions){
                               .wrapper = (const char *const[]){ "/bin/sh", "-c", script, "@SOCKET@", NULL },
                       });
        state = strf("%s/contexts", t.dir);
        ASSERT_FALSE(tsmd_log_contains(&t, "keeps no state then"));
        ASSERT_FALSE(tsmd_log_contains(&t, "refusing to keep contexts"));
        assert_owned(state, worker_uid, worker_gid, 0700);
        if (the_workers)
                ASSERT_TRUE(tsmd_log_contains(&t, strf("The context state directory '%s' was mode 0755, made it 0700.",
                                                       state)));
        /* Its file is there while the context is (it is removed when the connection goes). */
        c = tsmd_connect_guest(&t);
        ASSERT_TRUE(guest_open_context(c) >= 0);
        d = opendir(state);
        ASSERT_NOT_NULL(d);
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                ASSERT_TRUE(strlen(de->d_name) > 6 && streq(de->d_name + strlen(de->d_name) - 6, ".state"));
                assert_owned(strf("%s/%s", state, de->d_name), worker_uid, worker_gid, 0600);
                n_files++;
        }
        closedir(d);
        ASSERT_EQ(n_files, 1U);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

TEST(state_dir_of_the_worker_made_private_by_the_worker) {
        run_state_dir_readable(true);
}

TEST(state_dir_of_root_made_private_by_the_monitor) {
        run_state_dir_readable(false);
}

/* ---- the unit's system call filter ------------------------------------------------------- */

#define SYSCALL_NR_MAX 1024
#define SYSTEMD_ANALYZE "/usr/bin/systemd-analyze"

static int syscall_number(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(syscall_table); i++)
                if (streq(syscall_table[i].name, name))
                        return syscall_table[i].nr;
        return -1;
}

/* Allows (or denies) what item names in systemd's words: a system call, or a @group as this
 * host's systemd-analyze lists it, nested groups included. Names this architecture lacks are
 * skipped, as systemd skips them. */
static void filter_apply(bool allowed[static SYSCALL_NR_MAX], const char *item, bool allow, unsigned depth) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        char *line, *save = NULL;
        int nr;

        if (item[0] != '@') {
                nr = syscall_number(item);
                if (nr >= 0 && nr < SYSCALL_NR_MAX)
                        allowed[nr] = allow;
                return;
        }
        ASSERT_TRUE(depth < 8);
        {
                const char *argv[] = { SYSTEMD_ANALYZE, "syscall-filter", item, NULL };
                int status = run_capture(argv, &out, &err, 10 * USEC_PER_SEC);

                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        TEST_FAIL("systemd-analyze syscall-filter %s: %s", item, strempty(err));
        }
        for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                line += strspn(line, " \t");
                if (isempty(line) || line[0] == '#' || streq(line, item))
                        continue;
                filter_apply(allowed, line, allow, depth + 1);
        }
}

/* The system calls tsmd.service's SystemCallFilter= lines allow, as systemd reads them: the first
 * an allow-list (which brings @default), each later one adding to it, or taking away with "~". */
static const char *unit_allowed_syscalls(void) {
        _cleanup_free_ char *unit = read_file(TSMD_SERVICE_PATH), *list = NULL;
        bool allowed[SYSCALL_NR_MAX] = {}, first = true;
        char *line, *save = NULL;
        size_t size = 0;
        FILE *f;

        ASSERT_NOT_NULL(unit);
        for (line = strtok_r(unit, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *word, *save_word = NULL;
                bool allow;

                if (strncmp(line, "SystemCallFilter=", strlen("SystemCallFilter=")) != 0)
                        continue;
                line += strlen("SystemCallFilter=");
                allow = line[0] != '~';
                line += !allow;
                ASSERT_TRUE(!first || allow); /* tsmd.service's is an allow-list */
                if (first)
                        filter_apply(allowed, "@default", true, 0);
                first = false;
                for (word = strtok_r(line, " ", &save_word); word; word = strtok_r(NULL, " ", &save_word))
                        filter_apply(allowed, word, allow, 0);
        }
        ASSERT_FALSE(first);

        f = open_memstream(&list, &size);
        ASSERT_NOT_NULL(f);
        for (int nr = 0; nr < SYSCALL_NR_MAX; nr++)
                if (allowed[nr])
                        fprintf(f, "%s%d", ftell(f) > 0 ? "," : "", nr);
        ASSERT_EQ(fclose(f), 0);
        return strf("%s", list);
}

/*
 * The real tsmd under the unit's bounding set and its system call filter (every other call
 * EPERM, as SystemCallErrorNumber= says): it starts, its worker puts up its own filter and
 * serves a VMM through a bind and a guest request, a reload applies, and a worker killed is
 * replaced and serves again. Before, seccomp() itself was outside the filter (systemd 252's
 * @system-service lacks it), the worker refused to run without its sandbox, and tsmd never
 * became ready under the unit.
 */
TEST(daemon_serves_under_the_units_system_call_filter) {
        const char *bounding = unit_bounding_set_arg();
        const char *script, *allowed, *config = "[Platform]\nMode=emulated\nEmulatedDevices=0000:01:00.0\n";
        VarlinkClient *c;
        int64_t ctx;
        Tsmd t;

        need_root_and_worker();
        if (access("/usr/bin/setpriv", X_OK) < 0)
                SKIP("no setpriv (util-linux)");
        if (tsmd_under_valgrind())
                SKIP("valgrind does not emulate seccomp()");
        if (access(SYSTEMD_ANALYZE, X_OK) < 0)
                SKIP("no " SYSTEMD_ANALYZE " to list the unit's system call groups");
        allowed = unit_allowed_syscalls();

        script = strf("d=${0%%/*} && umask 077 && "
                      "mkdir -m 0750 \"$d/audit\" && chown %u:%u \"$d/audit\" && "
                      "mkdir -m 0700 \"$d/contexts\" && chown %u:%u \"$d/contexts\" && "
                      "exec /usr/bin/setpriv --clear-groups --no-new-privs --inh-caps=-all %s " SECCOMP_EXEC_PATH " %s "
                      "\"$@\" --socket=\"$0\" --guest-socket=\"$d/io.tsmd.Guest\"",
                      (unsigned) worker_uid, (unsigned) admin_gid, (unsigned) worker_uid, (unsigned) worker_gid,
                      bounding, allowed);
        tsmd_start(&t, &(TsmdOptions){
                               .config = config,
                               .wrapper = (const char *const[]){ "/bin/sh", "-c", script, "@SOCKET@", NULL },
                               /* LeakSanitizer's check at exit needs ptrace(), which the unit's
                                * filter refuses (@debug): AddressSanitizer's other checks run. */
                               .env = TSMD_SANITIZED ? (const char *const[]){ "ASAN_OPTIONS=detect_leaks=0:symbolize=0", NULL }
                                                     : NULL,
                       });

        c = tsmd_connect_guest(&t);
        ctx = guest_open_context(c);
        CALL_OK(c, "io.tsmd.Guest.AttachDevice", guest_attach_params(ctx, 1, "0000:01:00.0"));
        CALL_OK(c, "io.tsmd.Guest.Bind", guest_vdev_params(ctx, 1));
        CALL_OK(c, "io.tsmd.Guest.GuestRequest",
                strf("{\"context\":%" PRIi64 ",\"vdeviceId\":1,\"scope\":\"info\","
                     "\"request\":\"EIEAAAAAAAAAAAAAAAAAAA==\",\"maxResponseSize\":64}",
                     ctx));
        varlink_client_free(c);

        ASSERT_TRUE(tsmd_reload(&t, config));
        tsmd_kill_worker(&t);
        c = tsmd_connect_guest(&t);
        ASSERT_TRUE(guest_open_context(c) >= 0);
        varlink_client_free(c);
        ASSERT_FALSE(tsmd_log_contains(&t, "Operation not permitted"));
        ASSERT_TRUE(tsmd_audit_last_seq(&t) > 0);
        tsmd_teardown(&t);
}

TEST_MAIN()
