/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Runs in: monitor (and, between fork() and execv(), the worker-to-be). */

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "capability.h"
#include "log.h"
#include "tsm-priv.h"
#include "worker-spawn.h"

int worker_user_lookup(const char *name, uid_t *ret_uid, gid_t *ret_gid) {
        struct passwd pw, *result = NULL;
        char buf[4096];
        int r;

        r = getpwnam_r(name, &pw, buf, sizeof(buf), &result);
        if (r != 0)
                return -r;
        if (!result)
                return -ESRCH;
        /* The point is not to be root: nor by the group, whose files gid 0 reaches. */
        if (pw.pw_uid == 0 || pw.pw_gid == 0)
                return -EPERM;
        *ret_uid = pw.pw_uid;
        *ret_gid = pw.pw_gid;
        return 0;
}

/* Whether the directory at fd (O_PATH) has no entries: 1 empty, 0 not, or -errno if root may
 * not list it (then nobody knows what it holds). */
static int dir_is_empty(int fd) {
        struct dirent *de;
        int rfd, empty = 1;
        DIR *d;

        rfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (rfd < 0)
                return negative_errno();
        d = fdopendir(rfd);
        if (!d) {
                safe_close(rfd);
                return -ENOMEM;
        }
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..")) {
                        empty = 0;
                        break;
                }
        closedir(d);
        return empty;
}

static bool have_cap_chown(void) {
        _cleanup_(cap_freep) cap_t caps = cap_get_proc();
        cap_flag_value_t v = CAP_CLEAR;

        return caps && cap_get_flag(caps, CAP_CHOWN, CAP_EFFECTIVE, &v) == 0 && v == CAP_SET;
}

int worker_dir_prepare(const char *dir, bool private_dir, uid_t uid, gid_t gid) {
        _cleanup_close_ int fd = -EBADF;
        bool created = false;
        struct stat st;
        mode_t want;
        int r;

        /* O_PATH: a directory that is the worker's (tsmd.tmpfiles makes /var/log/tsmd 0750
         * tsmd:tsm-admin) is not root's to open for reading without CAP_DAC_OVERRIDE. */
        fd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) {
                if (mkdir(dir, private_dir ? 0700 : 0750) >= 0)
                        created = true;
                else if (errno != EEXIST)
                        return negative_errno();
                fd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        /* Owner rwx, and of the rest nothing for a private directory. */
        want = private_dir ? 0700 : (st.st_mode & 07777) | 0700;

        if (st.st_uid != uid) {
                /* SECURITY: only a directory we made, or an empty one, becomes the worker's. A
                 * tsmd.conf naming a shared one (/var/log, /etc) must not give the worker it
                 * and what it holds, nor change its mode: -ENOTEMPTY, nothing touched. An
                 * older tsmd's files are tsmd.tmpfiles' to hand over ("Z"), or the admin's. */
                if (!created) {
                        r = dir_is_empty(fd);
                        if (r < 0)
                                return r;
                        if (r == 0)
                                return -ENOTEMPTY;
                }
                /* Nor is its mode changed unless it can then be given (after the start the
                 * monitor no longer has CAP_CHOWN). */
                if (!have_cap_chown())
                        return -EPERM;
                /* While it is still ours: afterwards chmod() would take CAP_FOWNER. */
                if ((st.st_mode & 07777) != want && st.st_uid == geteuid()) {
                        r = fd_chmod(fd, want);
                        /* SECURITY: the names in a private directory may be secrets (reclaim
                         * tokens): not given to the worker while others may list them. */
                        if (r < 0 && private_dir)
                                return r;
                        if (r >= 0)
                                st.st_mode = (st.st_mode & ~07777) | want;
                }
                if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH) < 0)
                        return negative_errno();
        }
        /* A private directory that is the worker's already (tsmd.tmpfiles', or one an older
         * tsmd gave as it was) only its owner may chmod() without CAP_FOWNER, which we do not
         * have: the worker makes it private itself before it writes there. */
        if (private_dir)
                return 0;
        /* The group of a directory that was the worker's already stays: the admins' to read. */
        if ((st.st_mode & 0700) != 0700)
                return fd_chmod(fd, (st.st_mode & 07777) | 0700);
        return 0;
}

int worker_binary_open(const char *path, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        fd = open(path, O_PATH | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 0022) || !(st.st_mode & 0001))
                return -EPERM;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

_Static_assert(WORKER_AUDIT_DIR_FD == TSM_PRIV_CHANNEL_FD + 2, "the fds a worker starts with follow each other");

/* In the child: everything that can fail ends it with a status saying which step failed. */
static _noreturn_ void child(int binary, char *const argv[], int channel, int audit_dir, uid_t uid, gid_t gid,
                             pid_t parent, cap_value_t last_cap) {
        _cleanup_(cap_freep) cap_t none = NULL;
        int b, ch, a = -EBADF;

        /* The channel to fd 3, the binary (close-on-exec) to fd 4, the audit directory (if any)
         * to fd 5, nothing else crosses: fds from the service manager are not all
         * close-on-exec. Out of the way first, so that none lands on another. */
        b = fcntl(binary, F_DUPFD_CLOEXEC, 10);
        ch = fcntl(channel, F_DUPFD, 10);
        if (audit_dir >= 0 && (a = fcntl(audit_dir, F_DUPFD, 10)) < 0)
                _exit(10);
        if (b < 0 || ch < 0 || dup2(ch, TSM_PRIV_CHANNEL_FD) < 0 ||
            dup3(b, TSM_PRIV_CHANNEL_FD + 1, O_CLOEXEC) < 0 || (a >= 0 && dup2(a, WORKER_AUDIT_DIR_FD) < 0))
                _exit(10);
        binary = TSM_PRIV_CHANNEL_FD + 1;
        if (syscall(SYS_close_range, a >= 0 ? WORKER_AUDIT_DIR_FD + 1 : WORKER_AUDIT_DIR_FD, ~0U, 0) < 0)
                _exit(11);

        if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0)
                _exit(12);
        /* The bounding set while CAP_SETPCAP is still ours; setresuid() then clears the rest.
         * Past the kernel's last (capability_last_cap() may not know it) EINVAL: none to drop. */
        for (cap_value_t c = 0; c <= last_cap; c++)
                if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
                        _exit(13);
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
                _exit(13);
        if (setresuid(uid, uid, uid) < 0)
                _exit(14);
        none = cap_init();
        if (!none || cap_set_proc(none) < 0)
                _exit(15);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                _exit(16);
        /* After the uid change, which clears it: a worker never outlives its monitor. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent)
                _exit(17);

        (void) unsetenv("NOTIFY_SOCKET");
        (void) unsetenv("LISTEN_FDS");
        (void) unsetenv("LISTEN_PID");
        (void) unsetenv("LISTEN_FDNAMES");
        (void) unsetenv("WATCHDOG_USEC");
        (void) unsetenv("WATCHDOG_PID");

        (void) syscall(SYS_execveat, binary, "", argv, environ, AT_EMPTY_PATH);
        _exit(127);
}

int worker_spawn(int binary, char *const argv[], int channel, int audit_dir, uid_t uid, gid_t gid, pid_t *ret_pid) {
        cap_value_t last_cap = capability_last_cap(); /* the kernel's, not the headers' */
        pid_t parent = getpid(), pid;
        sigset_t all, old;

        /* No handler may run in the child between fork() and execv(). */
        sigfillset(&all);
        if (sigprocmask(SIG_SETMASK, &all, &old) < 0)
                return negative_errno();
        pid = fork();
        if (pid == 0) {
                /* The monitor's handlers (libevent's, writing to the monitor's own pipe) and its
                 * ignored signals are not the worker's business. */
                for (int sig = 1; sig < NSIG; sig++)
                        (void) signal(sig, SIG_DFL);
                (void) sigprocmask(SIG_SETMASK, &old, NULL);
                child(binary, argv, channel, audit_dir, uid, gid, parent, last_cap);
        }
        (void) sigprocmask(SIG_SETMASK, &old, NULL);
        if (pid < 0)
                return negative_errno();
        *ret_pid = pid;
        return 0;
}
