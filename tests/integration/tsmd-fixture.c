/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Starting, talking to and stopping the real tsmd (see tsmd-fixture.h). Runs in: tests. */

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>

#include "base64.h"
#include "json-util.h"
#include "tsmd-fixture.h"
#include "varlink-server.h"
#include "varlink-message.h"

#ifndef TSMD_PATH
#error "TSMD_PATH must be defined (the tsmd executable)"
#endif

#define FAIL_AT(file, line, ...)                                                                   \
        do {                                                                                       \
                fprintf(stderr, "%s:%d: ", (file), (line));                                        \
                fprintf(stderr, __VA_ARGS__);                                                      \
                fputc('\n', stderr);                                                               \
                _exit(1);                                                                          \
        } while (0)

/* ---- small utilities ------------------------------------------------------------------- */

uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

void sleep_usec(uint64_t usec) {
        struct timespec ts = { .tv_sec = (time_t) (usec / USEC_PER_SEC),
                               .tv_nsec = (long) (usec % USEC_PER_SEC) * 1000 };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

const char *strf(const char *format, ...) {
        static char ring[8][8192];
        static unsigned next;
        char *buf = ring[next++ % ELEMENTSOF(ring)];
        va_list ap;
        int n;

        va_start(ap, format);
        n = vsnprintf(buf, sizeof(ring[0]), format, ap);
        va_end(ap);
        if (n < 0 || (size_t) n >= sizeof(ring[0]))
                TEST_FAIL("strf: result too long for \"%s\"", format);
        return buf;
}

void write_file(const char *path, const char *text) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        size_t len = strlen(text), done = 0;

        if (fd < 0)
                TEST_FAIL("open %s: %s", path, strerror(errno));
        while (done < len) {
                ssize_t n = write(fd, text + done, len - done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        TEST_FAIL("write %s: %s", path, strerror(errno));
                done += (size_t) n;
        }
}

static char *read_all_fd(int fd) {
        size_t len = 0, allocated = 4096;
        char *buf = malloc(allocated);

        if (!buf)
                TEST_FAIL("out of memory");
        for (;;) {
                ssize_t n;

                if (allocated - len < 2048) {
                        char *p = realloc(buf, allocated * 2);
                        if (!p)
                                TEST_FAIL("out of memory");
                        buf = p;
                        allocated *= 2;
                }
                n = read(fd, buf + len, allocated - len - 1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (size_t) n;
        }
        buf[len] = 0;
        return buf;
}

char *read_file(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0 && errno == ENOENT)
                return NULL;
        if (fd < 0)
                TEST_FAIL("open %s: %s", path, strerror(errno));
        return read_all_fd(fd);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) (flag == FTW_DP ? rmdir(path) : unlink(path));
        return 0;
}

int rm_rf(const char *path) {
        return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0 ? -errno : 0;
}

char *b64(const void *data, size_t len) {
        char *s = NULL;

        if (base64_encode(data, len, &s) < 0 || !s)
                TEST_FAIL("base64_encode failed");
        return s;
}

void *unb64(const char *text, size_t *ret_len) {
        void *p = NULL;
        int r = base64_decode(text, strlen(text), &p, ret_len);

        if (r < 0)
                TEST_FAIL("base64_decode(\"%s\"): %s", text, strerror(-r));
        return p;
}

const char *scratch_dir(void) {
        static char dir[] = "/tmp/tsmd-integ-scratch-XXXXXX";
        int p[2];
        pid_t pid;

        if (!mkdtemp(dir))
                TEST_FAIL("mkdtemp: %s", strerror(errno));
        /* The write end stays open in the test until it exits (it is close-on-exec, so
         * nothing the test runs keeps it); then the child removes the directory. */
        if (pipe2(p, O_CLOEXEC) < 0)
                TEST_FAIL("pipe2: %s", strerror(errno));
        fflush(NULL);
        pid = fork();
        if (pid < 0)
                TEST_FAIL("fork: %s", strerror(errno));
        if (pid == 0) {
                char c;

                for (int i = 3; i < 1024; i++)
                        if (i != p[0])
                                (void) close(i);
                while (read(p[0], &c, 1) > 0 || errno == EINTR)
                        ;
                (void) rm_rf(dir);
                _exit(0);
        }
        close(p[0]);
        return dir;
}

/* ---- the guard process ------------------------------------------------------------------ */

/*
 * Reads lines from the test: "P<pid>" (tsmd's pid), "D" (teardown done: nothing to do). On
 * EOF without "D" the test died: kill tsmd, print its log, remove the directory.
 */
static _noreturn_ void guard_main(int fd, const char *dir, const char *log_path) {
        char buf[256];
        size_t len = 0;
        pid_t pid = 0;
        bool done = false;
        int log_fd;

        /* The guard must not be the one keeping tsmd's socket or a client alive. */
        for (int i = 3; i < 1024; i++)
                if (i != fd)
                        (void) close(i);

        for (;;) {
                ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
                char *nl;

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (size_t) n;
                buf[len] = 0;
                while ((nl = strchr(buf, '\n'))) {
                        *nl = 0;
                        if (buf[0] == 'P')
                                pid = (pid_t) atoi(buf + 1);
                        else if (buf[0] == 'D')
                                done = true;
                        len -= (size_t) (nl + 1 - buf);
                        memmove(buf, nl + 1, len + 1);
                }
        }
        if (done)
                _exit(0);

        if (pid > 0)
                (void) kill(pid, SIGKILL);
        fprintf(stderr, "---- the test failed; tsmd's log (%s) ----\n", log_path);
        log_fd = open(log_path, O_RDONLY | O_CLOEXEC);
        if (log_fd >= 0) {
                char *text = read_all_fd(log_fd);
                fputs(text, stderr);
                free(text);
                close(log_fd);
        }
        fprintf(stderr, "---- end of tsmd's log ----\n");
        fflush(stderr);
        /* Let tsmd die before its directory goes. */
        sleep_usec(100 * USEC_PER_MSEC);
        (void) rm_rf(dir);
        _exit(0);
}

static void guard_send(Tsmd *t, const char *line) {
        size_t len = strlen(line);

        if (t->guard_fd >= 0 && write(t->guard_fd, line, len) != (ssize_t) len)
                TEST_FAIL("writing to the guard: %s", strerror(errno));
}

/* ---- lifecycle --------------------------------------------------------------------------- */

int tsmd_raw_connect(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

bool tsmd_raw_send(int fd, const void *p, size_t n) {
        const char *s = p;

        while (n > 0) {
                ssize_t k = send(fd, s, n, MSG_NOSIGNAL);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && (errno == EPIPE || errno == ECONNRESET))
                        return false;
                if (k < 0)
                        TEST_FAIL("send: %s", strerror(errno));
                s += k;
                n -= (size_t) k;
        }
        return true;
}

char *tsmd_raw_recv(int fd, uint64_t timeout_usec) {
        size_t n = 0, size = 4096;
        char *buf = malloc(size);
        uint64_t deadline = now_usec() + timeout_usec;

        ASSERT_NOT_NULL(buf);
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                uint64_t now = now_usec();
                ssize_t k;

                if (now >= deadline)
                        TEST_FAIL("no message and no hang-up from tsmd within %llu ms",
                                  (unsigned long long) (timeout_usec / USEC_PER_MSEC));
                if (poll(&p, 1, (int) ((deadline - now) / USEC_PER_MSEC) + 1) <= 0)
                        continue;
                if (n == size) {
                        size *= 2;
                        buf = realloc(buf, size);
                        ASSERT_NOT_NULL(buf);
                }
                k = recv(fd, buf + n, 1, 0);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k == 0 || (k < 0 && errno == ECONNRESET)) {
                        if (n > 0)
                                TEST_FAIL("tsmd hung up within a message: %.*s", (int) n, buf);
                        free(buf);
                        return NULL;
                }
                if (k < 0)
                        TEST_FAIL("recv: %s", strerror(errno));
                if (buf[n++] == '\0')
                        return buf;
        }
}

static void format_status(int status, char *buf, size_t size) {
        if (WIFEXITED(status))
                snprintf(buf, size, "exit status %d", WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
                snprintf(buf, size, "killed by signal %d (%s)%s", WTERMSIG(status),
                         strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
        else
                snprintf(buf, size, "wait status 0x%x", status);
}

bool tsmd_is_running(Tsmd *t) {
        int status;
        pid_t p;

        if (t->pid <= 0)
                return false;
        p = waitpid(t->pid, &status, WNOHANG);
        if (p == 0)
                return true;
        if (p == t->pid) {
                t->exit_status = status;
                t->pid = 0;
        }
        return false;
}

static void append_arg(const char **argv, size_t *n, size_t max, const char *arg) {
        if (*n + 1 >= max)
                TEST_FAIL("too many tsmd arguments");
        argv[(*n)++] = arg;
        argv[*n] = NULL;
}

/* Every test daemon audits into its own directory and reads its own policy; a test that
 * brings a policy.conf of its own overrides the default one, which lets root and uid 65534
 * (the second test client) use every device in the non-debug scopes. */
static const char default_policy[] =
        "[Client:tests]\n"
        "Users=root 65534\n"
        "Devices=*\n"
        "Scopes=info state-change\n";

/* Whether a line of config assigns key (each key name is in one section only). */
static bool config_sets(const char *config, const char *key) {
        size_t n = strlen(key);

        for (const char *p = config; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
                p += strspn(p, " \t");
                if (strncmp(p, key, n) == 0 && p[n + strspn(p + n, " \t")] == '=')
                        return true;
        }
        return false;
}

/* The test's config, and for each key of these it does not set, the test daemon's own value:
 * a key may be set only once in tsmd.conf. (Not in strf()'s ring: config may be there.) */
static const char *config_with_test_sections(Tsmd *t, const char *config) {
        static const struct {
                const char *section, *key, *in_dir, *value; /* in_dir: a path under t->dir */
        } keys[] = {
                { "Audit", "Directory", "/audit", NULL },
                { "Audit", "Journal", NULL, "no" },
                { "Policy", "File", "/policy.conf", NULL },
                { "Policy", "DropInDirectory", "/policy.d", NULL },
                { "Guest", "ContextStateDirectory", "/contexts", NULL },
        };
        static char text[16384];
        size_t n;

        n = (size_t) snprintf(text, sizeof(text), "%s\n", strempty(config));
        for (size_t i = 0; i < ELEMENTSOF(keys) && n < sizeof(text); i++)
                if (!config_sets(config, keys[i].key))
                        n += (size_t) snprintf(text + n, sizeof(text) - n, "[%s]\n%s=%s%s\n", keys[i].section,
                                               keys[i].key, keys[i].in_dir ? t->dir : "",
                                               keys[i].in_dir ?: keys[i].value);
        if (n >= sizeof(text))
                TEST_FAIL("tsmd.conf too long");
        return text;
}

/* Runs tsmd as o says, its output appended to tsmd.log, and tells the guard its pid. What
 * wait_running() waits for is the monitor's next "running." line: the count of those already in
 * the log (a restart reuses the log) is in t->running_before. */
static void spawn_process(Tsmd *t, const TsmdOptions *o) {
        char socket_arg[400], guest_arg[400], config_arg[400], sysfs_arg[400], level_arg[64], asan_env[512],
                callgrind_arg[400];
        const char *argv[64];
        size_t n = 0;

        t->running_before = tsmd_log_count(t, "running.");

        if (o->wrapper)
                for (size_t i = 0; o->wrapper[i]; i++)
                        append_arg(argv, &n, ELEMENTSOF(argv),
                                   streq(o->wrapper[i], "@SOCKET@") ? t->socket : o->wrapper[i]);
        if (!isempty(getenv("TSMD_TEST_CALLGRIND"))) {
                /* For a profile (BENCHMARKS.md): monitor, worker and each of their threads counted
                 * apart, one file per process in the directory named, which the worker's user
                 * must be able to write to. */
                snprintf(callgrind_arg, sizeof(callgrind_arg), "--callgrind-out-file=%s/callgrind.out.%%p",
                         getenv("TSMD_TEST_CALLGRIND"));
                append_arg(argv, &n, ELEMENTSOF(argv), VALGRIND_PATH);
                append_arg(argv, &n, ELEMENTSOF(argv), "-q");
                append_arg(argv, &n, ELEMENTSOF(argv), "--vgdb=no");
                append_arg(argv, &n, ELEMENTSOF(argv), "--tool=callgrind");
                append_arg(argv, &n, ELEMENTSOF(argv), "--trace-children=yes");
                append_arg(argv, &n, ELEMENTSOF(argv), "--separate-threads=yes");
                append_arg(argv, &n, ELEMENTSOF(argv), callgrind_arg);
        } else if (tsmd_under_valgrind()) {
                /* Monitor and worker (which it runs from an fd: execveat) both under memcheck;
                 * with -q, every line valgrind prints as "==pid== " is an error it found. */
                append_arg(argv, &n, ELEMENTSOF(argv), VALGRIND_PATH);
                append_arg(argv, &n, ELEMENTSOF(argv), "-q");
                append_arg(argv, &n, ELEMENTSOF(argv), "--vgdb=no");
                append_arg(argv, &n, ELEMENTSOF(argv), "--trace-children=yes");
                append_arg(argv, &n, ELEMENTSOF(argv), "--leak-check=full");
                append_arg(argv, &n, ELEMENTSOF(argv), "--errors-for-leak-kinds=definite");
        }
        append_arg(argv, &n, ELEMENTSOF(argv), TSMD_PATH);
        if (!o->default_config) {
                snprintf(config_arg, sizeof(config_arg), "--config=%s", t->config_path);
                append_arg(argv, &n, ELEMENTSOF(argv), config_arg);
        }
        if (!o->wrapper) {
                snprintf(socket_arg, sizeof(socket_arg), "--socket=%s", t->socket);
                append_arg(argv, &n, ELEMENTSOF(argv), socket_arg);
                snprintf(guest_arg, sizeof(guest_arg), "--guest-socket=%s", t->guest_socket);
                append_arg(argv, &n, ELEMENTSOF(argv), guest_arg);
        }
        snprintf(level_arg, sizeof(level_arg), "--log-level=%s", o->log_level ?: "debug");
        append_arg(argv, &n, ELEMENTSOF(argv), level_arg);
        /* Unprivileged, tsmd cannot shrink its bounding set and refuses to run without this. */
        if (geteuid() != 0)
                append_arg(argv, &n, ELEMENTSOF(argv), "--keep-capabilities");
        if (o->sysfs_root) {
                snprintf(sysfs_arg, sizeof(sysfs_arg), "--sysfs-root=%s", o->sysfs_root);
                append_arg(argv, &n, ELEMENTSOF(argv), sysfs_arg);
        }
        if (o->args)
                for (size_t i = 0; o->args[i]; i++)
                        append_arg(argv, &n, ELEMENTSOF(argv), o->args[i]);

        /* LeakSanitizer's symbolizer is a program, which the worker's seccomp filter kills
         * (SIGSYS) before the report is out: raw addresses, and the report is in the log. Added
         * to the options the test passes, if it does, which replace ours. */
        const char *asan_options = getenv("ASAN_OPTIONS");
        if (o->env)
                for (size_t i = 0; o->env[i]; i++)
                        if (strncmp(o->env[i], "ASAN_OPTIONS=", strlen("ASAN_OPTIONS=")) == 0)
                                asan_options = o->env[i] + strlen("ASAN_OPTIONS=");
        snprintf(asan_env, sizeof(asan_env), "ASAN_OPTIONS=%s%ssymbolize=0", asan_options ?: "",
                 asan_options ? ":" : "");

        /* The next child only (tsmd, the init of the new namespace): ours, and those of every
         * other process forked later, stay in ours. */
        _cleanup_close_ int our_pid_ns = -EBADF;
        if (o->pid_namespace) {
                our_pid_ns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
                if (our_pid_ns < 0 || unshare(CLONE_NEWPID) < 0)
                        TEST_FAIL("a PID namespace for tsmd: %s", strerror(errno));
        }
        /* A parent in another PID namespace is pid 0 to its child. */
        pid_t parent = o->pid_namespace ? 0 : getpid();
        fflush(NULL);
        t->pid = fork();
        if (t->pid < 0)
                TEST_FAIL("fork: %s", strerror(errno));
        if (t->pid == 0) {
                sigset_t all;
                int log_fd, null_fd;

                /* Never outlive the test, whatever happens to it. */
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(127);
                log_fd = open(t->log_path, O_WRONLY | O_APPEND | O_CLOEXEC);
                null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (log_fd < 0 || null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 ||
                    dup2(log_fd, 2) < 0)
                        _exit(127);
                /* Only stdio crosses into tsmd (socket activation passes its own fds). */
                (void) syscall(SYS_close_range, 3U, ~0U, 0U);
                /* A test may ignore SIGPIPE, and ignored signals survive exec. */
                (void) signal(SIGPIPE, SIG_DFL);
                sigemptyset(&all);
                (void) sigprocmask(SIG_SETMASK, &all, NULL);
                (void) unsetenv("LISTEN_FDS");
                (void) unsetenv("LISTEN_PID");
                (void) unsetenv("NOTIFY_SOCKET");
                if (o->env)
                        for (size_t i = 0; o->env[i]; i++)
                                (void) putenv((char *) o->env[i]);
                if (TSMD_SANITIZED)
                        (void) putenv(asan_env);
                if (o->nofile && setrlimit(RLIMIT_NOFILE, o->nofile) < 0)
                        _exit(127);
                /* Valgrind takes the soft limit it starts with as the hard one and refuses tsmd
                 * the raise to the real hard limit (a shell's soft 1024 would hold): done here. */
                if (!o->nofile && tsmd_under_valgrind()) {
                        struct rlimit rl;

                        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                                _exit(127);
                        rl.rlim_cur = rl.rlim_max;
                        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                                _exit(127);
                }
                execv(argv[0], (char **) argv);
                fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
                _exit(127);
        }
        if (our_pid_ns >= 0 && setns(our_pid_ns, CLONE_NEWPID) < 0)
                TEST_FAIL("back to our PID namespace: %s", strerror(errno));
        t->sigterm_sent = false;
        t->exit_status = 0;
        guard_send(t, strf("P%d\n", (int) t->pid));
}

/* Waits until the monitor spawn_process() started reports its worker serving. */
static void wait_running(Tsmd *t, bool wrapper) {
        uint64_t deadline;

        /* With socket activation tsmd is exec'd on the first connection: make it. Without,
         * no probe: the monitor listens before its worker serves, and a probe would show up
         * as a connection in the worker's counts. */
        deadline = now_usec() + TSMD_START_TIMEOUT_USEC;
        for (;;) {
                int fd;

                if (!tsmd_is_running(t)) {
                        char st[128];
                        format_status(t->exit_status, st, sizeof(st));
                        TEST_FAIL("tsmd exited during start-up (%s)", st);
                }
                if (!wrapper)
                        break;
                fd = tsmd_raw_connect(t->socket);
                if (fd >= 0) {
                        close(fd);
                        break;
                }
                if (now_usec() > deadline)
                        TEST_FAIL("tsmd did not listen on %s within %llu ms", t->socket,
                                  (unsigned long long) (TSMD_START_TIMEOUT_USEC / USEC_PER_MSEC));
                sleep_usec(5 * USEC_PER_MSEC);
        }
        /* Ready when the monitor says its worker serves ("tsmd ... running."). */
        for (;;) {
                char exe[512];
                ssize_t l = readlink(strf("/proc/%d/exe", (int) t->pid), exe, sizeof(exe) - 1);

                if (l > 0) {
                        exe[l] = 0;
                        /* Under valgrind, the exe is valgrind's tool. */
                        if ((streq(exe, TSMD_PATH) || tsmd_under_valgrind()) &&
                            tsmd_log_count(t, "running.") > t->running_before)
                                break;
                }
                if (!tsmd_is_running(t))
                        TEST_FAIL("tsmd exited during start-up");
                if (now_usec() > deadline)
                        TEST_FAIL("tsmd did not report its worker serving within %llu ms",
                                  (unsigned long long) (TSMD_START_TIMEOUT_USEC / USEC_PER_MSEC));
                sleep_usec(5 * USEC_PER_MSEC);
        }
}

static void spawn(Tsmd *t, const TsmdOptions *o) {
        spawn_process(t, o);
        wait_running(t, o->wrapper != NULL);
}

/* tsmd's directory, its files and the guard: all but tsmd itself. */
static void prepare(Tsmd *t, const TsmdOptions *o) {
        int guard[2];

        *t = (Tsmd) { .guard_fd = -EBADF };

        /* TSMD_TEST_TMPDIR: another file system for tsmd's directory, audit log included (the
         * benchmarks' --state-dir=). */
        snprintf(t->dir, sizeof(t->dir), "%s/tsmd-integ-XXXXXX", getenv("TSMD_TEST_TMPDIR") ?: "/tmp");
        if (!mkdtemp(t->dir))
                TEST_FAIL("mkdtemp: %s", strerror(errno));
        /* Clients running as another user must reach the socket inside. */
        if (chmod(t->dir, 0755) < 0)
                TEST_FAIL("chmod %s: %s", t->dir, strerror(errno));
        snprintf(t->socket, sizeof(t->socket), "%s/io.tsmd", t->dir);
        snprintf(t->guest_socket, sizeof(t->guest_socket), "%s/io.tsmd.Guest", t->dir);
        snprintf(t->config_path, sizeof(t->config_path), "%s/tsmd.conf", t->dir);
        snprintf(t->log_path, sizeof(t->log_path), "%s/tsmd.log", t->dir);

        write_file(t->config_path, config_with_test_sections(t, o->config));
        write_file(strf("%s/policy.conf", t->dir), default_policy);
        for (size_t i = 0; i < o->n_files; i++) {
                if (strchr(o->files[i].name, '/'))
                        TEST_FAIL("fixture file names are relative: %s", o->files[i].name);
                write_file(strf("%s/%s", t->dir, o->files[i].name), o->files[i].text);
        }
        write_file(t->log_path, "");

        /* The guard, before tsmd exists, so it never holds any of tsmd's fds. */
        if (pipe2(guard, O_CLOEXEC) < 0)
                TEST_FAIL("pipe2: %s", strerror(errno));
        fflush(NULL);
        t->guard_pid = fork();
        if (t->guard_pid < 0)
                TEST_FAIL("fork: %s", strerror(errno));
        if (t->guard_pid == 0) {
                close(guard[1]);
                guard_main(guard[0], t->dir, t->log_path);
        }
        close(guard[0]);
        t->guard_fd = guard[1];
}

void tsmd_start(Tsmd *t, const TsmdOptions *o) {
        static const TsmdOptions none = {};

        if (!o)
                o = &none;
        prepare(t, o);
        spawn(t, o);
}

void tsmd_start_nowait(Tsmd *t, const TsmdOptions *o) {
        if (o->wrapper)
                TEST_FAIL("tsmd_start_nowait() cannot wait for a wrapper's first connection");
        prepare(t, o);
        spawn_process(t, o);
}

void tsmd_wait_running(Tsmd *t) {
        wait_running(t, /* wrapper= */ false);
}

void tsmd_restart(Tsmd *t, const TsmdOptions *o) {
        static const TsmdOptions none = {};

        if (tsmd_is_running(t))
                TEST_FAIL("tsmd_restart() needs tsmd stopped or dead first");
        spawn(t, o ?: &none);
}

void tsmd_start_config(Tsmd *t, const char *config) {
        tsmd_start(t, &(TsmdOptions) { .config = config });
}

int tsmd_terminate(Tsmd *t) {
        uint64_t deadline;

        if (!tsmd_is_running(t))
                return t->exit_status;
        if (!t->sigterm_sent)
                tsmd_kill(t, SIGTERM);
        deadline = now_usec() + TSMD_STOP_TIMEOUT_USEC;
        while (tsmd_is_running(t)) {
                if (now_usec() > deadline) {
                        (void) kill(t->pid, SIGKILL);
                        (void) waitpid(t->pid, NULL, 0);
                        t->pid = 0;
                        TEST_FAIL("tsmd did not exit within %llu ms of SIGTERM; killed it",
                                  (unsigned long long) (TSMD_STOP_TIMEOUT_USEC / USEC_PER_MSEC));
                }
                sleep_usec(2 * USEC_PER_MSEC);
        }
        return t->exit_status;
}

void tsmd_kill(Tsmd *t, int sig) {
        if (t->pid <= 0 || kill(t->pid, sig) < 0)
                TEST_FAIL("kill -%d tsmd: %s", sig, t->pid <= 0 ? "not running" : strerror(errno));
        if (sig == SIGTERM)
                t->sigterm_sent = true;
}

void tsmd_kill_worker(Tsmd *t) {
        unsigned before = tsmd_log_count(t, "serving again.");
        pid_t old = tsmd_worker_pid(t), now;
        uint64_t deadline = now_usec() + TSMD_WAIT_USEC;

        if (old <= 0)
                TEST_FAIL("tsmd has no worker to kill");
        if (kill(old, SIGKILL) < 0)
                TEST_FAIL("kill -KILL %d: %s", (int) old, strerror(errno));
        while (tsmd_log_count(t, "serving again.") <= before || (now = tsmd_worker_pid(t)) == 0 || now == old) {
                if (now_usec() > deadline)
                        TEST_FAIL("the monitor did not start a new worker within %llu ms",
                                  (unsigned long long) (TSMD_WAIT_USEC / USEC_PER_MSEC));
                sleep_usec(5 * USEC_PER_MSEC);
        }
}

void tsmd_stop(Tsmd *t) {
        int status = tsmd_terminate(t);

        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                char s[128];
                format_status(status, s, sizeof(s));
                TEST_FAIL("tsmd did not exit cleanly after SIGTERM: %s", s);
        }
}

uint64_t tsmd_wait_usec(void) {
        return (tsmd_under_valgrind() ? 4 : 1) * 5 * USEC_PER_SEC;
}

uint64_t tsmd_start_timeout_usec(void) {
        return (tsmd_under_valgrind() ? 4 : 1) * 10 * USEC_PER_SEC;
}

bool tsmd_under_valgrind(void) {
        return !isempty(getenv("TSMD_TEST_VALGRIND")) || !isempty(getenv("TSMD_TEST_CALLGRIND"));
}

const char *tsmd_preload_asan_env(void) {
        static char env[512];
        const char *own = getenv("ASAN_OPTIONS");

        snprintf(env, sizeof(env), "ASAN_OPTIONS=%s%sverify_asan_link_order=0", own ?: "", own ? ":" : "");
        return env;
}

/* The first error valgrind reported in the log, if any: "==pid== " starts every line of one
 * (its warnings about syscalls it does not know start with "--pid--"). */
static void check_valgrind_log(Tsmd *t) {
        _cleanup_free_ char *log = NULL;
        const char *p;

        if (!tsmd_under_valgrind())
                return;
        log = tsmd_read_log(t);
        for (p = log; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
                unsigned pid;
                int end = 0;

                if (sscanf(p, "==%u==%n", &pid, &end) == 1 && end > 0)
                        TEST_FAIL("valgrind found an error in tsmd (see its log): %.*s",
                                  (int) strcspn(p, "\n"), p);
        }
}

/* Debug builds check every reply tsmd sends against the IDL and log what does not match: a
 * reply no client may rely on, so a failure here. */
static void check_replies_log(Tsmd *t) {
        _cleanup_free_ char *log = tsmd_read_log(t);
        const char *p = strstr(log, VARLINK_REPLY_MISMATCH);

        if (!p)
                return;
        while (p > log && p[-1] != '\n')
                p--;
        TEST_FAIL("tsmd sent a reply its IDL does not allow: %.*s", (int) strcspn(p, "\n"), p);
}

static bool line_has(const char *line, const char *needle) {
        return memmem(line, strcspn(line, "\n"), needle, strlen(needle));
}

/* In sanitized builds UBSan reports and goes on, so its reports show only in tsmd's log. */
static void check_sanitizer_log(Tsmd *t) {
        static const char *const reports[] = { "runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer" };
        _cleanup_free_ char *log = NULL;

        log = tsmd_read_log(t);
        if (!log)
                return;
        for (const char *p = log; *p; p += strcspn(p, "\n"), p += *p == '\n')
                for (size_t i = 0; i < ELEMENTSOF(reports); i++)
                        if (line_has(p, reports[i]))
                                TEST_FAIL("a sanitizer reported an error in tsmd: %.*s", (int) strcspn(p, "\n"), p);
}

void tsmd_expect_clean_exit(Tsmd *t) {
        _cleanup_free_ char *log = NULL;
        const char *end = NULL;

        if (t->pid > 0)
                tsmd_stop(t);
        check_sanitizer_log(t);
        log = tsmd_read_log(t);
        for (const char *p = log; *p; p += strcspn(p, "\n"), p += *p == '\n')
                /* The monitor says how each worker ended. */
                if (line_has(p, "Worker ") && (line_has(p, " exited with status ") || line_has(p, " was killed by signal ")))
                        end = p;
        if (!end)
                TEST_FAIL("tsmd's log does not say how its worker ended");
        if (!line_has(end, " exited with status 0."))
                TEST_FAIL("tsmd's last worker did not exit cleanly: %.*s", (int) strcspn(end, "\n"), end);
}

void tsmd_teardown(Tsmd *t) {
        if (t->pid > 0)
                tsmd_stop(t);
        check_valgrind_log(t);
        check_sanitizer_log(t);
        check_replies_log(t);
        for (size_t i = 0; i < t->n_helpers; i++) {
                safe_close(t->helper_fds[i]);
                (void) waitpid(t->helpers[i], NULL, 0);
        }
        t->n_helpers = 0;
        (void) rm_rf(t->dir);
        guard_send(t, "D\n");
        t->guard_fd = safe_close(t->guard_fd);
        if (t->guard_pid > 0)
                (void) waitpid(t->guard_pid, NULL, 0);
        t->guard_pid = 0;
}

void tsmd_write_file(Tsmd *t, const char *name, const char *text) {
        const char *tmp = strf("%s/.%s.tmp", t->dir, name), *path = strf("%s/%s", t->dir, name);

        write_file(tmp, text);
        if (rename(tmp, path) < 0)
                TEST_FAIL("rename %s: %s", path, strerror(errno));
}

char *tsmd_read_log(Tsmd *t) {
        _cleanup_close_ int fd = open(t->log_path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                TEST_FAIL("open %s: %s", t->log_path, strerror(errno));
        return read_all_fd(fd);
}

unsigned tsmd_log_count(Tsmd *t, const char *needle) {
        _cleanup_free_ char *log = tsmd_read_log(t);
        unsigned n = 0;

        for (const char *p = log; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

bool tsmd_log_contains(Tsmd *t, const char *needle) {
        return tsmd_log_count(t, needle) > 0;
}

bool tsmd_wait_log(Tsmd *t, const char *needle, unsigned n, uint64_t timeout_usec) {
        uint64_t deadline = now_usec() + timeout_usec;

        for (;;) {
                if (tsmd_log_count(t, needle) >= n)
                        return true;
                if (now_usec() > deadline)
                        return false;
                sleep_usec(5 * USEC_PER_MSEC);
        }
}

void tsmd_write_config(Tsmd *t, const char *config) {
        tsmd_write_file(t, "tsmd.conf", config_with_test_sections(t, config));
}

bool tsmd_reload(Tsmd *t, const char *config) {
        static const char reloaded[] = "Configuration reloaded from", kept[] = "keeping the configuration in force",
                          kept_policy[] = "keeping the policy in force";
        unsigned n_reloaded = tsmd_log_count(t, reloaded),
                 n_kept = tsmd_log_count(t, kept) + tsmd_log_count(t, kept_policy);
        uint64_t deadline = now_usec() + TSMD_WAIT_USEC;

        tsmd_write_config(t, config);
        tsmd_kill(t, SIGHUP);
        for (;;) {
                if (tsmd_log_count(t, reloaded) > n_reloaded)
                        return true;
                if (tsmd_log_count(t, kept) + tsmd_log_count(t, kept_policy) > n_kept)
                        return false;
                if (!tsmd_is_running(t))
                        TEST_FAIL("tsmd died on SIGHUP");
                if (now_usec() > deadline)
                        TEST_FAIL("tsmd did not log a reload within %llu ms of SIGHUP",
                                  (unsigned long long) (TSMD_WAIT_USEC / USEC_PER_MSEC));
                sleep_usec(2 * USEC_PER_MSEC);
        }
}

/* ---- resource accounting ------------------------------------------------------------------ */

/* The monitor's children: its worker (none while one is being restarted). */
pid_t tsmd_worker_pid(Tsmd *t) {
        _cleanup_close_ int fd = open(strf("/proc/%d/task/%d/children", (int) t->pid, (int) t->pid), O_RDONLY | O_CLOEXEC);
        _cleanup_free_ char *s = NULL;

        if (fd < 0)
                TEST_FAIL("open /proc/%d/task/%d/children: %s", (int) t->pid, (int) t->pid, strerror(errno));
        s = read_all_fd(fd);
        return (pid_t) strtol(s, NULL, 10);
}

/* prlimit() on a process of another uid takes CAP_SYS_RESOURCE, which a container's root may
 * lack: asked as the worker's own user. */
void tsmd_set_worker_fsize(Tsmd *t, rlim_t cur) {
        struct rlimit lim = { .rlim_cur = cur, .rlim_max = RLIM_INFINITY };
        pid_t worker = tsmd_worker_pid(t), pid;
        struct stat st;
        int status;

        ASSERT_TRUE(worker > 0);
        ASSERT_OK(stat(strf("/proc/%d", (int) worker), &st));
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0) {
                if (setresgid(st.st_gid, st.st_gid, st.st_gid) < 0 || setresuid(st.st_uid, st.st_uid, st.st_uid) < 0 ||
                    prlimit(worker, RLIMIT_FSIZE, &lim, NULL) < 0)
                        _exit(1);
                _exit(0);
        }
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Monitor and worker: what tsmd holds is the sum of both. */
static size_t tsmd_pids(Tsmd *t, pid_t ret[static 2]) {
        pid_t w = tsmd_worker_pid(t);

        ret[0] = t->pid;
        ret[1] = w;
        return w > 0 ? 2 : 1;
}

unsigned tsmd_threads_of(pid_t pid) {
        char path[64], line[256];
        unsigned n = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        ASSERT_NOT_NULL(f);
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Threads: %u", &n) == 1)
                        break;
        fclose(f);
        return n;
}

unsigned tsmd_count_fds_of(pid_t pid) {
        DIR *d = opendir(strf("/proc/%d/fd", (int) pid));
        struct dirent *de;
        unsigned n = 0;

        if (!d)
                TEST_FAIL("opendir /proc/%d/fd: %s", (int) pid, strerror(errno));
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

unsigned tsmd_count_fds(Tsmd *t) {
        pid_t pids[2];
        size_t n = tsmd_pids(t, pids);
        unsigned k = 0;

        for (size_t i = 0; i < n; i++)
                k += tsmd_count_fds_of(pids[i]);
        return k;
}

void tsmd_print_fds(Tsmd *t) {
        pid_t pids[2];
        size_t n = tsmd_pids(t, pids);

        for (size_t i = 0; i < n; i++) {
                DIR *d = opendir(strf("/proc/%d/fd", (int) pids[i]));
                struct dirent *de;

                if (!d)
                        continue; /* gone meanwhile: nothing of it to show */
                while ((de = readdir(d))) {
                        char target[256];
                        ssize_t l;

                        if (de->d_name[0] == '.')
                                continue;
                        l = readlink(strf("/proc/%d/fd/%s", (int) pids[i], de->d_name), target, sizeof(target) - 1);
                        target[l < 0 ? 0 : l] = 0;
                        fprintf(stderr, "# pid %d fd %s -> %s\n", (int) pids[i], de->d_name, target);
                }
                closedir(d);
        }
}

static char *read_proc(pid_t pid, const char *file) {
        _cleanup_close_ int fd = open(strf("/proc/%d/%s", (int) pid, file), O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                TEST_FAIL("open /proc/%d/%s: %s", (int) pid, file, strerror(errno));
        return read_all_fd(fd);
}

/* The sum of a /proc/PID/status field (in KiB) over tsmd's processes. */
static unsigned long status_kib(Tsmd *t, const char *field) {
        pid_t pids[2];
        size_t n = tsmd_pids(t, pids);
        unsigned long kib = 0;

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *s = read_proc(pids[i], "status");
                const char *p = strstr(s, field);

                if (!p)
                        TEST_FAIL("no %s in /proc/%d/status", field, (int) pids[i]);
                kib += strtoul(p + strlen(field), NULL, 10);
        }
        return kib;
}

unsigned long tsmd_rss_kib(Tsmd *t) {
        return status_kib(t, "VmRSS:");
}

unsigned long tsmd_anon_kib(Tsmd *t) {
        return status_kib(t, "RssAnon:");
}

unsigned long tsmd_hwm_kib(Tsmd *t) {
        return status_kib(t, "VmHWM:");
}

unsigned long long tsmd_cpu_ticks(Tsmd *t) {
        pid_t pids[2];
        size_t n = tsmd_pids(t, pids);
        unsigned long long ticks = 0;

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *s = read_proc(pids[i], "stat");
                const char *p = strrchr(s, ')');
                unsigned long long utime = 0, stime = 0;

                /* After "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt
                 * cmajflt utime stime. */
                if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
                        TEST_FAIL("cannot parse /proc/%d/stat", (int) pids[i]);
                ticks += utime + stime;
        }
        return ticks;
}

unsigned tsmd_wait_fds(Tsmd *t, unsigned n, uint64_t timeout_usec) {
        uint64_t deadline = now_usec() + timeout_usec;
        unsigned k;

        for (;;) {
                k = tsmd_count_fds(t);
                if (k == n || now_usec() > deadline)
                        return k;
                sleep_usec(5 * USEC_PER_MSEC);
        }
}

static VarlinkClient *connect_to(const char *path);

unsigned tsmd_settled_fds(Tsmd *t, unsigned n_clients) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = connect_to(t->socket);
        uint64_t deadline = now_usec() + TSMD_WAIT_USEC;

        for (;;) {
                json_object *r = CALL_OK(c, "io.tsmd.Service.GetStatus", NULL);
                /* A client's fd whose close may wait (a pipe) is closed on a thread of its own:
                 * counted until it is. */
                int64_t closing = json_object_is_type(json_object_object_get(r, "fdsClosing"), json_type_int)
                                          ? JINT(r, "fdsClosing")
                                          : 0;

                if (JINT(r, "connections") == (int64_t) n_clients + 1 && closing == 0)
                        return tsmd_count_fds(t) - 1;
                if (now_usec() > deadline)
                        TEST_FAIL("tsmd still counts %" PRIi64 " connections and %" PRIi64 " fds closing, expected %u and 0",
                                  JINT(r, "connections"), closing, n_clients + 1);
                sleep_usec(2 * USEC_PER_MSEC);
        }
}

unsigned tsmd_idle_fds(Tsmd *t) {
        return tsmd_settled_fds(t, 0);
}

/* ---- clients ------------------------------------------------------------------------------ */

static VarlinkClient *connect_to(const char *path) {
        VarlinkClient *c = NULL;
        int r = varlink_client_connect(path, &c);

        if (r < 0)
                TEST_FAIL("connecting to %s: %s", path, strerror(-r));
        varlink_client_set_timeout(c, 10 * USEC_PER_SEC);
        return c;
}

VarlinkClient *tsmd_connect(Tsmd *t) {
        return connect_to(t->socket);
}

VarlinkClient *tsmd_connect_guest(Tsmd *t) {
        return connect_to(t->guest_socket);
}

bool tsmd_can_switch_uid(void) {
        return geteuid() == 0;
}

void tsmd_private_mount_namespace(const char *why) {
        if (geteuid() != 0)
                SKIP("%s needs root", why);
        if (unshare(CLONE_NEWNS) < 0)
                SKIP("unshare(CLONE_NEWNS): %s", strerror(errno));
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                SKIP("making / private: %s", strerror(errno));
}

static int send_fd(int sock, int fd) {
        char control[CMSG_SPACE(sizeof(int))] = {};
        char byte = 'F';
        struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                             .msg_controllen = sizeof(control) };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
        return sendmsg(sock, &mh, MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

static int recv_fd(int sock, int timeout_ms) {
        char control[CMSG_SPACE(sizeof(int))] = {};
        char byte = 0;
        struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                             .msg_controllen = sizeof(control) };
        struct pollfd p = { .fd = sock, .events = POLLIN };
        struct cmsghdr *cm;
        int fd;

        if (poll(&p, 1, timeout_ms) != 1)
                return -ETIMEDOUT;
        if (recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) != 1)
                return -EIO;
        cm = CMSG_FIRSTHDR(&mh);
        if (byte != 'F' || !cm || cm->cmsg_type != SCM_RIGHTS)
                return -EIO;
        memcpy(&fd, CMSG_DATA(cm), sizeof(int));
        return fd;
}

VarlinkClient *tsmd_connect_as(Tsmd *t, uid_t uid, gid_t gid) {
        return tsmd_connect_to_as(t, t->guest_socket, uid, gid);
}

VarlinkClient *tsmd_connect_to_as(Tsmd *t, const char *socket, uid_t uid, gid_t gid) {
        return tsmd_connect_to_as_groups(t, socket, uid, gid, NULL, 0);
}

VarlinkClient *tsmd_connect_to_as_groups(Tsmd *t, const char *socket, uid_t uid, gid_t gid, const gid_t *groups,
                                         size_t n_groups) {
        VarlinkClient *c = NULL;
        int pair[2], fd, r;
        pid_t pid;

        if (!tsmd_can_switch_uid())
                SKIP("connecting as uid %u needs root", (unsigned) uid);
        if (t->n_helpers >= TSMD_MAX_HELPERS)
                TEST_FAIL("too many helper processes");
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
                TEST_FAIL("socketpair: %s", strerror(errno));

        fflush(NULL);
        pid = fork();
        if (pid < 0)
                TEST_FAIL("fork: %s", strerror(errno));
        if (pid == 0) {
                char byte;

                /* Hold nothing of the test's: a dup of another client's socket would keep that
                 * connection open after the test closed it. */
                if (dup2(pair[1], 3) < 0)
                        _exit(2);
                (void) syscall(SYS_close_range, 4U, ~0U, 0U);
                pair[1] = 3;
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (setgroups(n_groups, groups) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
                        _exit(2);
                if (geteuid() != uid || getegid() != gid)
                        _exit(3);
                fd = tsmd_raw_connect(socket);
                if (fd < 0 || send_fd(pair[1], fd) < 0)
                        _exit(4);
                close(fd);
                /* Stay around (SO_PEERCRED names this pid) until the test lets go. */
                while (read(pair[1], &byte, 1) < 0 && errno == EINTR)
                        ;
                _exit(0);
        }
        close(pair[1]);
        fd = recv_fd(pair[0], 5000);
        if (fd < 0) {
                int status = 0;
                (void) kill(pid, SIGKILL);
                (void) waitpid(pid, &status, 0);
                TEST_FAIL("connecting as uid %u failed (helper status 0x%x): %s", (unsigned) uid, status,
                          strerror(-fd));
        }
        t->helpers[t->n_helpers] = pid;
        t->helper_fds[t->n_helpers++] = pair[0];

        r = varlink_client_new_from_fd(fd, &c);
        if (r < 0)
                TEST_FAIL("varlink_client_new_from_fd: %s", strerror(-r));
        varlink_client_set_timeout(c, 10 * USEC_PER_SEC);
        return c;
}

/* ---- calls -------------------------------------------------------------------------------- */

static json_object *parse_json(const char *file, int line, const char *text) {
        json_object *o;

        if (!text)
                return NULL;
        o = json_tokener_parse(text);
        if (!o)
                FAIL_AT(file, line, "test bug: not JSON: %s", text);
        return o;
}

static const char *json_text(json_object *o) {
        return o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE) : "null";
}

static const char *call_at(const char *file, int line, VarlinkClient *c, const char *method,
                           const char *params, json_object **ret) {
        json_object *reply = NULL;
        const char *error = NULL;
        int r;

        r = varlink_client_call(c, method, parse_json(file, line, params), &reply, &error);
        if (r < 0)
                FAIL_AT(file, line, "%s(%s): no reply: %s", method, params ?: "{}", strerror(-r));
        if (ret)
                *ret = reply;
        return error;
}

json_object *tsmd_audit_query(Tsmd *t, const char *params) {
        VarlinkClient *a = tsmd_connect(t);
        json_object *r = CALL_OK(a, "io.tsmd.Admin.QueryAudit", params), *records;

        ASSERT_TRUE(json_object_object_get_ex(r, "records", &records));
        ASSERT_TRUE(json_object_is_type(records, json_type_array));
        json_object_get(records);
        varlink_client_free(a);
        return records;
}

/* Whether the log holds a record numbered from or later. */
static bool audit_has_from(VarlinkClient *a, int64_t from) {
        json_object *r = CALL_OK(a, "io.tsmd.Admin.QueryAudit", strf("{\"fromSeq\":%" PRIi64 ",\"limit\":1}", from)),
                    *records;

        ASSERT_TRUE(json_object_object_get_ex(r, "records", &records));
        return json_object_array_length(records) > 0;
}

/* Searched for with one-record queries: the whole log would not fit a small MaxMessageSize=, and
 * QueryAudit answers at most 10000 records. The numbers have no gaps. */
int64_t tsmd_audit_last_seq(Tsmd *t) {
        VarlinkClient *a = tsmd_connect(t);
        int64_t lo = 0, hi = 64; /* a record from lo on (or lo 0), none from hi on */

        while (audit_has_from(a, hi)) {
                lo = hi;
                hi *= 2;
        }
        while (hi - lo > 1) {
                int64_t mid = lo + (hi - lo) / 2;

                if (audit_has_from(a, mid))
                        lo = mid;
                else
                        hi = mid;
        }
        varlink_client_free(a);
        return lo;
}

static bool field_is(json_object *rec, const char *key, const char *value) {
        json_object *v;

        return json_object_object_get_ex(rec, key, &v) && json_object_is_type(v, json_type_string) &&
               streq(json_object_get_string(v), value);
}

/* Records per QueryAudit in tsmd_audit_count_where(): a page must fit a test's small
 * MaxMessageSize=, and a query for thousands would grow tsmd's heap by megabytes, which its RSS
 * keeps. */
#define AUDIT_COUNT_PAGE 32

size_t tsmd_audit_count_where(Tsmd *t, int64_t after, const char *filter, const char *event, const char *result) {
        _cleanup_free_ char *f = strdup(filter ?: ""); /* strf()'s buffers are reused below */
        VarlinkClient *a = tsmd_connect(t);
        int64_t from = after + 1;
        size_t n = 0, got;

        ASSERT_NOT_NULL(f);
        do {
                json_object *r = CALL_OK(a, "io.tsmd.Admin.QueryAudit",
                                         strf("{%s%s\"fromSeq\":%" PRIi64 ",\"limit\":%u}", f, isempty(f) ? "" : ",", from,
                                              AUDIT_COUNT_PAGE)),
                            *records;

                ASSERT_TRUE(json_object_object_get_ex(r, "records", &records));
                got = json_object_array_length(records);
                for (size_t i = 0; i < got; i++) {
                        json_object *rec = json_object_array_get_idx(records, i);

                        json_object *count;

                        /* A summary stands for "count" calls not recorded one by one. */
                        if (field_is(rec, "event", event) && field_is(rec, "result", result))
                                n += json_object_object_get_ex(rec, "count", &count) ? (size_t) json_object_get_int64(count) : 1;
                        from = JINT(rec, "seq") + 1;
                }
        } while (got == AUDIT_COUNT_PAGE);
        varlink_client_free(a);
        return n;
}

size_t tsmd_audit_count(Tsmd *t, int64_t after, const char *event, const char *result) {
        return tsmd_audit_count_where(t, after, strf("\"uid\":%u,\"result\":\"%s\"", (unsigned) getuid(), result), event,
                                      result);
}

void tsmd_expect_audit_at(const char *file, int line, Tsmd *t, int64_t after, const char *event, const char *result,
                          size_t n) {
        uint64_t deadline = now_usec() + TSMD_WAIT_USEC;
        size_t have;

        /* Some records are written after the answer (a refused connection's, which has none). */
        while ((have = tsmd_audit_count(t, after, event, result)) < n && now_usec() < deadline)
                sleep_usec(5 * USEC_PER_MSEC);
        if (have != n)
                TEST_FAIL("%s:%d: %zu audit records of %s -> %s after seq %" PRIi64 ", expected %zu", file, line, have,
                          event, result, after, n);
}

const char *tsmd_call(VarlinkClient *c, const char *method, const char *params, json_object **ret) {
        return call_at(__FILE__, __LINE__, c, method, params, ret);
}

json_object *tsmd_call_ok_at(const char *file, int line, VarlinkClient *c, const char *method,
                             const char *params) {
        json_object *reply = NULL;
        const char *error = call_at(file, line, c, method, params, &reply);

        if (error)
                FAIL_AT(file, line, "%s(%s) failed: %s %s", method, params ?: "{}", error, json_text(reply));
        return reply;
}

bool json_matches(json_object *o, const char *expected) {
        _cleanup_(json_object_putp) json_object *e = parse_json(__FILE__, __LINE__, expected);

        if (!e)
                return true;
        if (!o || !json_object_is_type(o, json_type_object))
                return false;
        json_object_object_foreach(e, key, want) {
                json_object *have;

                if (!json_object_object_get_ex(o, key, &have) || !json_object_equal(have, want))
                        return false;
        }
        return true;
}

json_object *tsmd_call_error_at(const char *file, int line, VarlinkClient *c, const char *method,
                                const char *params, const char *error, const char *expected_params) {
        json_object *reply = NULL;
        const char *got = call_at(file, line, c, method, params, &reply);

        if (!got)
                FAIL_AT(file, line, "%s(%s): expected %s, but it succeeded: %s", method, params ?: "{}",
                        error, json_text(reply));
        if (!streq(got, error))
                FAIL_AT(file, line, "%s(%s): expected %s, got %s %s", method, params ?: "{}", error, got,
                        json_text(reply));
        if (!json_matches(reply, expected_params))
                FAIL_AT(file, line, "%s(%s): %s carries %s, expected at least %s", method,
                        params ?: "{}", error, json_text(reply), expected_params);
        return reply;
}

static json_object *field_at(const char *file, int line, json_object *o, const char *key,
                             json_type type) {
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, type))
                FAIL_AT(file, line, "expected a %s field '%s' in %s", json_type_to_name(type), key,
                        json_text(o));
        return v;
}

int64_t json_int_at(const char *file, int line, json_object *o, const char *key) {
        return json_object_get_int64(field_at(file, line, o, key, json_type_int));
}

const char *json_str_at(const char *file, int line, json_object *o, const char *key) {
        return json_object_get_string(field_at(file, line, o, key, json_type_string));
}

bool json_bool_at(const char *file, int line, json_object *o, const char *key) {
        return json_object_get_boolean(field_at(file, line, o, key, json_type_boolean));
}

/* ---- asynchronous calls -------------------------------------------------------------------- */

static int on_async_reply(VarlinkClient *c, json_object *parameters, const char *error,
                          bool continues, void *userdata) {
        AsyncCall *a = userdata;

        if (a->n >= ASYNC_MAX_REPLIES)
                TEST_FAIL("more than %d replies to one call", ASYNC_MAX_REPLIES);
        a->params[a->n] = json_object_get(parameters);
        a->errors[a->n] = error ? strdup(error) : NULL;
        a->n++;
        if (!continues)
                a->done = true;
        return 0;
}

void tsmd_call_async(VarlinkClient *c, const char *method, const char *params, unsigned flags,
                     AsyncCall *a) {
        int r;

        *a = (AsyncCall) {};
        r = varlink_client_call_async(c, method, parse_json(__FILE__, __LINE__, params), flags,
                                      on_async_reply, a);
        if (r < 0)
                TEST_FAIL("%s: sending failed: %s", method, strerror(-r));
        /* Push it out now: the caller usually waits for tsmd to act on it. */
        (void) varlink_client_process(c);
}

bool tsmd_async_wait(VarlinkClient *c, AsyncCall *a, size_t n, uint64_t timeout_usec) {
        uint64_t deadline = now_usec() + timeout_usec;

        for (;;) {
                struct pollfd p = { .fd = varlink_client_get_fd(c) };
                uint64_t now;
                int r;

                do
                        r = varlink_client_process(c);
                while (r > 0 && a->n < n);
                if (a->n >= n)
                        return true;
                if (r < 0) /* dead: every pending callback has run */
                        return a->n >= n;
                now = now_usec();
                if (now >= deadline)
                        return false;
                p.events = varlink_client_get_events(c) ?: POLLIN;
                (void) poll(&p, 1, (int) DIV_ROUND_UP(deadline - now, USEC_PER_MSEC));
        }
}

void tsmd_pump(VarlinkClient *c, uint64_t timeout_usec) {
        AsyncCall never = {};

        (void) tsmd_async_wait(c, &never, 1, timeout_usec);
}

void async_call_done(AsyncCall *a) {
        for (size_t i = 0; i < a->n; i++) {
                json_object_put(a->params[i]);
                free(a->errors[i]);
        }
        *a = (AsyncCall) {};
}

bool tsmd_wait_hangup(VarlinkClient *c, uint64_t timeout_usec) {
        uint64_t deadline = now_usec() + timeout_usec;
        int fd = varlink_client_get_fd(c);

        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };
                uint64_t now = now_usec();
                char buf[4096];

                if (now >= deadline)
                        return false;
                if (poll(&p, 1, (int) DIV_ROUND_UP(deadline - now, USEC_PER_MSEC)) <= 0)
                        continue;
                if (p.revents & (POLLHUP | POLLRDHUP | POLLERR))
                        return true;
                /* Readable: drain what tsmd still sent; EOF is the hang-up. */
                ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                        return true;
        }
}

/* ---- running programs ------------------------------------------------------------------- */

int run_capture(const char *const *argv, char **ret_stdout, char **ret_stderr, uint64_t timeout_usec) {
        int out[2], err[2], status = 0;
        uint64_t deadline = now_usec() + timeout_usec;
        size_t len[2] = {}, allocated[2] = { 4096, 4096 };
        char *buf[2] = { malloc(4096), malloc(4096) };
        struct pollfd p[2];
        bool open_[2] = { true, true };
        pid_t pid;

        if (!buf[0] || !buf[1])
                TEST_FAIL("out of memory");
        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
                TEST_FAIL("pipe2: %s", strerror(errno));
        fflush(NULL);
        pid = fork();
        if (pid < 0)
                TEST_FAIL("fork: %s", strerror(errno));
        if (pid == 0) {
                int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
                        _exit(127);
                (void) signal(SIGPIPE, SIG_DFL);
                execv(argv[0], (char **) argv);
                fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
                _exit(127);
        }
        close(out[1]);
        close(err[1]);
        p[0] = (struct pollfd) { .fd = out[0], .events = POLLIN };
        p[1] = (struct pollfd) { .fd = err[0], .events = POLLIN };

        while (open_[0] || open_[1]) {
                uint64_t now = now_usec();

                if (now >= deadline) {
                        (void) kill(pid, SIGKILL);
                        (void) waitpid(pid, NULL, 0);
                        TEST_FAIL("%s did not finish within %llu ms", argv[0],
                                  (unsigned long long) (timeout_usec / USEC_PER_MSEC));
                }
                for (int i = 0; i < 2; i++)
                        p[i].fd = open_[i] ? (i == 0 ? out[0] : err[0]) : -1;
                if (poll(p, 2, (int) DIV_ROUND_UP(deadline - now, USEC_PER_MSEC)) < 0 && errno != EINTR)
                        TEST_FAIL("poll: %s", strerror(errno));
                for (int i = 0; i < 2; i++) {
                        ssize_t n;

                        if (!open_[i] || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        if (allocated[i] - len[i] < 1024) {
                                char *q = realloc(buf[i], allocated[i] * 2);
                                if (!q)
                                        TEST_FAIL("out of memory");
                                buf[i] = q;
                                allocated[i] *= 2;
                        }
                        n = read(p[i].fd, buf[i] + len[i], allocated[i] - len[i] - 1);
                        if (n > 0)
                                len[i] += (size_t) n;
                        else if (n == 0 || errno != EINTR)
                                open_[i] = false;
                }
        }
        close(out[0]);
        close(err[0]);
        buf[0][len[0]] = 0;
        buf[1][len[1]] = 0;

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        TEST_FAIL("waitpid: %s", strerror(errno));

        if (ret_stdout)
                *ret_stdout = buf[0];
        else
                free(buf[0]);
        if (ret_stderr)
                *ret_stderr = buf[1];
        else
                free(buf[1]);
        return status;
}
