/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Starting, killing, restarting and stopping a tsmd for libtsm's tests (see tsmd-instance.h).
 * Runs in: tests only. */

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "tsmd-instance.h"
#include "varlink-server.h"

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

#ifndef TSMD_PATH
#error "TSMD_PATH must be defined (the tsmd executable)"
#endif

/* What ASan, LeakSanitizer and UBSan write at the start of a report. */
static const char *const sanitizer_reports[] = { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:" };

#define START_TIMEOUT_USEC (10 * 1000000ULL)
#define STOP_TIMEOUT_USEC (5 * 1000000ULL)

uint64_t test_now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

static void sleep_msec(unsigned msec) {
        struct timespec ts = { .tv_sec = msec / 1000, .tv_nsec = (long) (msec % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static void write_text(const char *path, const char *text) {
        FILE *f = fopen(path, "we");

        if (!f || fputs(text, f) < 0 || fclose(f) != 0)
                TEST_FAIL("Cannot write %s: %s", path, strerror(errno));
}

static void path_join(char *buf, const char *dir, const char *name) {
        if ((size_t) snprintf(buf, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
                TEST_FAIL("Path too long: %s/%s", dir, name);
}

/*
 * Everything the tests need tsmd to grant them, in one place (see daemon/policy/POLICY.md).
 * With no policy tsmd refuses every client (io.tsmd.Guest.Denied), so each daemon reads the
 * policy written here: the test's own uid may use every emulated device in the default scopes
 * (info, state-change) and no debug scope, which the error-mapping tests rely on being denied.
 * It is passed through tsmd.conf ([Policy] File=, DropInDirectory=), and tsmd audits into the
 * test's directory ([Audit] Directory=) rather than the system's. args (up to n_args_max
 * further tsmd arguments, NULL-filled) is for settings that need a command line option.
 */
static void grant_access(TsmdInstance *t, FILE *config, const char **args, size_t n_args_max) {
        char path[PATH_MAX], text[512];

        (void) args;
        (void) n_args_max;

        path_join(path, t->dir, "policy.conf");
        snprintf(text, sizeof(text),
                 "[Defaults]\n"
                 "Scopes=info state-change\n"
                 "\n"
                 "[Client:libtsm-test]\n"
                 "Users=%u\n"
                 "Devices=*\n"
                 "Backends=emulated\n",
                 (unsigned) getuid());
        write_text(path, text);

        fprintf(config,
                "\n[Policy]\nFile=%s/policy.conf\nDropInDirectory=%s/policy.d\n"
                "\n[Audit]\nDirectory=%s/audit\nJournal=no\n"
                "\n[Guest]\nContextStateDirectory=%s/contexts\n",
                t->dir, t->dir, t->dir, t->dir);
}

static void write_config(TsmdInstance *t, const char *extra_config, const char **args, size_t n_args_max) {
        FILE *f = fopen(t->config_path, "we");

        if (!f)
                TEST_FAIL("Cannot write %s: %s", t->config_path, strerror(errno));
        fprintf(f, "[Platform]\nMode=emulated\n%s", extra_config ?: "");
        grant_access(t, f, args, n_args_max);
        if (fclose(f) != 0)
                TEST_FAIL("Cannot write %s: %s", t->config_path, strerror(errno));
}

void tsmd_instance_dump_log(TsmdInstance *t) {
        char line[1024];
        FILE *f = fopen(t->log_path, "re");

        if (!f)
                return;
        fprintf(stderr, "---- tsmd log (%s) ----\n", t->log_path);
        while (fgets(line, sizeof(line), f))
                fputs(line, stderr);
        fprintf(stderr, "---- end of tsmd log ----\n");
        fclose(f);
}

/* tsmd's monitor listens before its worker serves; it logs "running." once the worker does.
 * The log is appended to across restarts: only what came after offset counts. */
static bool log_says_running(TsmdInstance *t, long offset) {
        char line[1024];
        bool found = false;
        FILE *f = fopen(t->log_path, "re");

        if (!f)
                return false;
        if (fseek(f, offset, SEEK_SET) < 0) {
                fclose(f);
                return false;
        }
        while (!found && fgets(line, sizeof(line), f))
                found = strstr(line, "running.");
        fclose(f);
        return found;
}

/* Reaps tsmd if it exited; returns true if it still runs. */
static bool still_running(TsmdInstance *t, int *ret_status) {
        int status;
        pid_t p;

        if (t->pid <= 0)
                return false;
        p = waitpid(t->pid, &status, WNOHANG);
        if (p == 0)
                return true;
        t->pid = 0;
        if (ret_status)
                *ret_status = status;
        return false;
}

static void spawn(TsmdInstance *t) {
        char guest_arg[PATH_MAX + 32], admin_arg[PATH_MAX + 32], config_arg[PATH_MAX + 32];
        const char *args[16] = {};
        size_t n = 0;
        uint64_t deadline;
        pid_t parent = getpid(), pid;
        struct stat st;
        long log_offset = stat(t->log_path, &st) >= 0 ? (long) st.st_size : 0;

        snprintf(guest_arg, sizeof(guest_arg), "--guest-socket=%s", t->guest_socket);
        snprintf(admin_arg, sizeof(admin_arg), "--socket=%s", t->admin_socket);
        snprintf(config_arg, sizeof(config_arg), "--config=%s", t->config_path);
        args[n++] = TSMD_PATH;
        args[n++] = guest_arg;
        args[n++] = admin_arg;
        args[n++] = config_arg;
        args[n++] = "--log-level=debug";
        write_config(t, t->extra_config, args + n, N_ELEMENTS(args) - n - 1);

        /* Sockets of an earlier run would make the wait below pass too early. */
        (void) unlink(t->guest_socket);
        (void) unlink(t->admin_socket);

        fflush(NULL);
        pid = fork();
        if (pid < 0)
                TEST_FAIL("fork: %s", strerror(errno));
        if (pid == 0) {
                int fd = open(t->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

                if (fd < 0 || dup2(fd, STDERR_FILENO) < 0 || dup2(fd, STDOUT_FILENO) < 0)
                        _exit(127);
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(127);
                if (t->nofile > 0 &&
                    setrlimit(RLIMIT_NOFILE, &(struct rlimit) { .rlim_cur = t->nofile, .rlim_max = t->nofile }) < 0)
                        _exit(127);
#ifdef HAVE_ASAN
                /* LeakSanitizer's symbolizer is a program, which the worker's seccomp filter
                 * kills: raw addresses, and the whole report is in the log. */
                char asan[512];
                snprintf(asan, sizeof(asan), "%s%ssymbolize=0", getenv("ASAN_OPTIONS") ?: "",
                         getenv("ASAN_OPTIONS") ? ":" : "");
                (void) setenv("ASAN_OPTIONS", asan, 1);
#endif
                execv(TSMD_PATH, (char *const *) args);
                _exit(127);
        }
        t->pid = pid;

        deadline = test_now_usec() + START_TIMEOUT_USEC;
        for (;;) {
                int status = 0;

                if (log_says_running(t, log_offset))
                        return;
                if (!still_running(t, &status)) {
                        tsmd_instance_dump_log(t);
                        TEST_FAIL("tsmd exited during startup (status 0x%x)", (unsigned) status);
                }
                if (test_now_usec() > deadline) {
                        tsmd_instance_dump_log(t);
                        TEST_FAIL("tsmd did not listen on %s in time", t->guest_socket);
                }
                sleep_msec(10);
        }
}

void tsmd_instance_start(TsmdInstance *t, const char *extra_config) {
        tsmd_instance_start_nofile(t, extra_config, 0);
}

void tsmd_instance_start_nofile(TsmdInstance *t, const char *extra_config, unsigned nofile) {
        const char *tmp = getenv("TMPDIR") ?: "/tmp";

        *t = (TsmdInstance) { .nofile = nofile };
        if ((size_t) snprintf(t->dir, sizeof(t->dir), "%s/test-libtsm-XXXXXX", tmp) >= sizeof(t->dir) ||
            !mkdtemp(t->dir))
                TEST_FAIL("mkdtemp: %s", strerror(errno));
        test_remove_at_end(t->dir);
        /* tsmd's worker runs as its own user and reads the configuration and policy in here. */
        if (chmod(t->dir, 0755) < 0)
                TEST_FAIL("chmod %s: %s", t->dir, strerror(errno));
        path_join(t->guest_socket, t->dir, "guest");
        path_join(t->admin_socket, t->dir, "admin");
        path_join(t->config_path, t->dir, "tsmd.conf");
        path_join(t->log_path, t->dir, "tsmd.log");
        snprintf(t->extra_config, sizeof(t->extra_config), "%s", extra_config ?: "");
        spawn(t);
}

void tsmd_instance_restart(TsmdInstance *t) {
        if (t->pid > 0)
                TEST_FAIL("tsmd is still running");
        spawn(t);
}

static int reap(TsmdInstance *t, uint64_t timeout_usec) {
        uint64_t deadline = test_now_usec() + timeout_usec;
        int status = 0;

        while (still_running(t, &status)) {
                if (test_now_usec() > deadline) {
                        (void) kill(t->pid, SIGKILL);
                        (void) waitpid(t->pid, NULL, 0);
                        t->pid = 0;
                        tsmd_instance_dump_log(t);
                        TEST_FAIL("tsmd did not exit in time");
                }
                sleep_msec(5);
        }
        return status;
}

/* tsmd's worker: the monitor's only child (0 if there is none right now). */
pid_t tsmd_instance_worker_pid(TsmdInstance *t) {
        char path[96], buf[64] = "";
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int) t->pid, (int) t->pid);
        f = fopen(path, "re");
        if (!f)
                return 0;
        if (!fgets(buf, sizeof(buf), f))
                buf[0] = 0;
        fclose(f);
        return (pid_t) strtol(buf, NULL, 10);
}

/* Threads of pid still there (the zombie leader included); 0 if it is gone. */
static size_t count_tasks(pid_t pid) {
        char path[64];
        struct dirent *de;
        size_t n = 0;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/task", (int) pid);
        d = opendir(path);
        if (!d)
                return 0;
        while ((de = readdir(d)))
                n += de->d_name[0] != '.';
        closedir(d);
        return n;
}

/* Gone, or dead and waiting to be reaped by whoever inherited it, all its threads with it: a
 * leader shows as a zombie while its other threads still exit, and the files they share (the
 * listening sockets) are closed only with the last of them. */
static bool process_gone(pid_t pid) {
        char path[64], buf[256] = "";
        const char *p;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return true;
        if (!fgets(buf, sizeof(buf), f))
                buf[0] = 0;
        fclose(f);
        p = strrchr(buf, ')');
        if (!p || p[1] == 0)
                return true;
        return p[2] == 'Z' && count_tasks(pid) <= 1;
}

void tsmd_instance_kill(TsmdInstance *t, int sig) {
        pid_t worker;
        uint64_t deadline;

        if (t->pid <= 0)
                TEST_FAIL("tsmd is not running");
        worker = tsmd_instance_worker_pid(t);
        if (kill(t->pid, sig) < 0)
                TEST_FAIL("kill: %s", strerror(errno));
        (void) reap(t, STOP_TIMEOUT_USEC);

        /* Its worker follows it (PR_SET_PDEATHSIG), a moment later: until then it still holds
         * the listening sockets. */
        deadline = test_now_usec() + STOP_TIMEOUT_USEC;
        while (worker > 0 && !process_gone(worker)) {
                if (test_now_usec() > deadline)
                        TEST_FAIL("tsmd's worker %d outlived tsmd", (int) worker);
                sleep_msec(5);
        }
}

static unsigned log_count(TsmdInstance *t, const char *needle) {
        char line[2048];
        unsigned n = 0;
        FILE *f = fopen(t->log_path, "re");

        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (strstr(line, needle))
                        n++;
        fclose(f);
        return n;
}

void tsmd_instance_kill_worker(TsmdInstance *t) {
        const char *needle = "serving again.";
        unsigned before = log_count(t, needle);
        uint64_t deadline = test_now_usec() + START_TIMEOUT_USEC;
        pid_t worker = tsmd_instance_worker_pid(t);

        if (worker <= 0)
                TEST_FAIL("tsmd has no worker");
        if (kill(worker, SIGKILL) < 0)
                TEST_FAIL("kill: %s", strerror(errno));
        while (log_count(t, needle) <= before) {
                if (test_now_usec() > deadline) {
                        tsmd_instance_dump_log(t);
                        TEST_FAIL("the monitor did not start a new worker");
                }
                sleep_msec(5);
        }
}

void tsmd_instance_stop(TsmdInstance *t) {
        int status;

        if (t->pid <= 0)
                TEST_FAIL("tsmd is not running");
        if (kill(t->pid, SIGTERM) < 0)
                TEST_FAIL("kill: %s", strerror(errno));
        status = reap(t, STOP_TIMEOUT_USEC);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                tsmd_instance_dump_log(t);
                TEST_FAIL("tsmd did not exit cleanly (status 0x%x)", (unsigned) status);
        }
        /* Debug builds log every reply that does not match the IDL. */
        if (log_count(t, VARLINK_REPLY_MISMATCH) > 0) {
                tsmd_instance_dump_log(t);
                TEST_FAIL("tsmd sent a reply its IDL does not allow (see its log)");
        }
        /* Sanitized builds: UBSan reports and goes on, and a worker's leaks are reported at its
         * exit, which leaves the monitor's exit status as it was: only the log shows them. */
        for (size_t i = 0; i < N_ELEMENTS(sanitizer_reports); i++)
                if (log_count(t, sanitizer_reports[i]) > 0) {
                        tsmd_instance_dump_log(t);
                        TEST_FAIL("a sanitizer reported an error in tsmd (see its log): %s", sanitizer_reports[i]);
                }
}

void tsmd_instance_reload(TsmdInstance *t, const char *extra_config) {
        const char *needle = "Configuration reloaded";
        unsigned before = log_count(t, needle);
        uint64_t deadline = test_now_usec() + START_TIMEOUT_USEC;
        const char *args[8];

        snprintf(t->extra_config, sizeof(t->extra_config), "%s", extra_config ?: "");
        write_config(t, t->extra_config, args, N_ELEMENTS(args));
        if (kill(t->pid, SIGHUP) < 0)
                TEST_FAIL("kill: %s", strerror(errno));
        while (log_count(t, needle) <= before) {
                if (test_now_usec() > deadline) {
                        tsmd_instance_dump_log(t);
                        TEST_FAIL("tsmd did not reload");
                }
                sleep_msec(10);
        }
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st;
        (void) flag;
        (void) ftw;
        return remove(path) < 0 ? -1 : 0;
}

void tsmd_instance_done(TsmdInstance *t) {
        if (t->pid > 0)
                tsmd_instance_stop(t);
        if (t->dir[0])
                (void) nftw(t->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
        t->dir[0] = 0;
}
