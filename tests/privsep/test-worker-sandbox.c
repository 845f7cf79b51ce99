/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The worker's seccomp filter (daemon/worker-sandbox.c): in a child that installs it, threads
 * still start (also ones that existed before), clone3() fails with ENOSYS, and every way to
 * start a process or a program, to outlive the monitor (PR_SET_PDEATHSIG), to make a namespace,
 * every other refused call, or a system call of a foreign architecture, kills the whole
 * process with SIGSYS; sockets of other families than AF_UNIX, and netlink sockets of other
 * protocols than NETLINK_KOBJECT_UEVENT, fail. End to end: the real tsmd's worker runs under
 * the filter.
 * Runs in: tests.
 */

#include <fcntl.h>
#include <linux/netlink.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "guest-calls.h"
#include "tsmd-fixture.h"
#include "worker-sandbox.h"

extern char **environ;

/* Runs f in a child under the filter; returns its wait status. */
static int run_sandboxed_after(void (*before)(void), void (*f)(void)) {
        int status;
        pid_t pid;

        fflush(NULL);
        pid = fork();
        if (pid < 0)
                TEST_FAIL("fork: %s", strerror(errno));
        if (pid == 0) {
                if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                        _exit(90);
                if (before)
                        before();
                if (worker_sandbox_apply() < 0)
                        _exit(91);
                f();
                _exit(0);
        }
        if (waitpid(pid, &status, 0) != pid)
                TEST_FAIL("waitpid: %s", strerror(errno));
        return status;
}

static int run_sandboxed(void (*f)(void)) {
        return run_sandboxed_after(NULL, f);
}

static void assert_killed_by_sigsys(int status, const char *what) {
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSYS)
                TEST_FAIL("%s: expected death by SIGSYS, got %s %d", what,
                          WIFSIGNALED(status) ? "signal" : "exit status",
                          WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

static void assert_exit_ok(int status, const char *what) {
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                TEST_FAIL("%s: expected exit 0, got %s %d", what, WIFSIGNALED(status) ? "signal" : "exit status",
                          WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

static int marker;

static void *thread_main(void *p) {
        return &marker;
}

static void make_threads(void) {
        for (int i = 0; i < 8; i++) {
                pthread_t t;
                void *ret;

                if (pthread_create(&t, NULL, thread_main, NULL) != 0 || pthread_join(t, &ret) != 0 || ret != &marker)
                        _exit(2);
        }
}

TEST(threads_still_start) {
        assert_exit_ok(run_sandboxed(make_threads), "pthread_create");
}

static void do_clone3(void) {
        struct {
                uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
        } args = { .exit_signal = SIGCHLD };

        if (syscall(SYS_clone3, &args, sizeof(args)) != -1 || errno != ENOSYS)
                _exit(3);
}

TEST(clone3_fails_with_enosys) {
        assert_exit_ok(run_sandboxed(do_clone3), "clone3");
}

static void do_fork(void) {
        pid_t pid = fork();

        if (pid == 0)
                _exit(0);
        _exit(4); /* the child was made: the filter let it through */
}

TEST(fork_kills) {
        assert_killed_by_sigsys(run_sandboxed(do_fork), "fork()");
}

#ifdef SYS_fork
static void do_sys_fork(void) {
        if (syscall(SYS_fork) == 0)
                _exit(0);
        _exit(4);
}

TEST(sys_fork_kills) {
        assert_killed_by_sigsys(run_sandboxed(do_sys_fork), "SYS_fork");
}
#endif

#ifdef SYS_vfork
static void do_sys_vfork(void) {
        /* Not vfork() itself: the child would return into this frame. */
        if (syscall(SYS_vfork) == 0)
                _exit(0);
        _exit(4);
}

TEST(sys_vfork_kills) {
        assert_killed_by_sigsys(run_sandboxed(do_sys_vfork), "SYS_vfork");
}
#endif

/* The attack itself: a process sharing nothing that makes it die with the worker. */
static void do_clone_process(void) {
        if (syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0) == 0) {
                (void) setsid();
                _exit(0);
        }
        _exit(4);
}

TEST(clone_without_clone_thread_kills) {
        assert_killed_by_sigsys(run_sandboxed(do_clone_process), "clone(SIGCHLD)");
}

static void do_posix_spawn(void) {
        char *argv[] = { (char *) "true", NULL };
        pid_t pid;

        if (posix_spawnp(&pid, "true", NULL, NULL, argv, environ) == 0)
                _exit(4);
        _exit(5);
}

TEST(posix_spawn_kills) {
        assert_killed_by_sigsys(run_sandboxed(do_posix_spawn), "posix_spawn()");
}

static void do_execve(void) {
        char *argv[] = { (char *) "/bin/true", NULL };

        (void) execve(argv[0], argv, environ);
        _exit(4);
}

TEST(execve_kills) {
        assert_killed_by_sigsys(run_sandboxed(do_execve), "execve()");
}

static void do_execveat(void) {
        char *argv[] = { (char *) "true", NULL };
        int fd = open("/bin/true", O_PATH | O_CLOEXEC);

        (void) syscall(SYS_execveat, fd, "", argv, environ, AT_EMPTY_PATH);
        _exit(4);
}

TEST(execveat_kills) {
        assert_killed_by_sigsys(run_sandboxed(do_execveat), "execveat()");
}

/* The kill on the monitor's death (worker-spawn.c) stays: clearing it, or making it a signal
 * the worker ignores, kills; SIGKILL, what it is, passes, as do other prctl() calls. */
static void do_clear_pdeathsig(void) {
        (void) prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
        _exit(4);
}

static void do_ignorable_pdeathsig(void) {
        (void) prctl(PR_SET_PDEATHSIG, SIGWINCH, 0, 0, 0);
        _exit(4);
}

static void do_kill_pdeathsig(void) {
        char name[16];
        int sig = 0;

        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0) < 0 ||
            sig != SIGKILL || prctl(PR_GET_NAME, name, 0, 0, 0) < 0)
                _exit(5);
}

TEST(pdeathsig_stays_sigkill) {
        assert_killed_by_sigsys(run_sandboxed(do_clear_pdeathsig), "prctl(PR_SET_PDEATHSIG, 0)");
        assert_killed_by_sigsys(run_sandboxed(do_ignorable_pdeathsig), "prctl(PR_SET_PDEATHSIG, SIGWINCH)");
        assert_exit_ok(run_sandboxed(do_kill_pdeathsig), "prctl(PR_SET_PDEATHSIG, SIGKILL)");
}

/* A user namespace would give the worker every capability in it (and a network namespace). */
static void do_unshare_user(void) {
        (void) unshare(CLONE_NEWUSER | CLONE_NEWNET);
        _exit(4);
}

TEST(unshare_kills) {
        assert_killed_by_sigsys(run_sandboxed(do_unshare_user), "unshare(CLONE_NEWUSER|CLONE_NEWNET)");
}

/* A thread's clone() flags with a new namespace: killed before the kernel looks at them (which
 * would refuse these anyway: CLONE_THREAD without CLONE_SIGHAND, so that without the filter
 * nothing starts). */
static void do_clone_thread_new_namespace(void) {
        (void) syscall(SYS_clone, CLONE_THREAD | CLONE_NEWNET, 0, 0, 0, 0);
        _exit(4);
}

TEST(clone_with_a_new_namespace_kills) {
        assert_killed_by_sigsys(run_sandboxed(do_clone_thread_new_namespace), "clone(CLONE_THREAD|CLONE_NEWNET)");
}

/* Each of the other refused calls, with arguments the kernel would refuse (or that do nothing):
 * without the filter they return, and the child exits 4. */
static const struct {
        const char *name;
        long nr, args[6];
} refused_calls[] = {
        { "setns", SYS_setns, { -1, 0 } },
#if !defined(HAVE_LSAN) && !defined(__SANITIZE_LEAK__) /* LeakSanitizer's: its builds let it through */
        { "ptrace", SYS_ptrace, { PTRACE_ATTACH, 0 /* getpid(), below */ } },
#endif
        { "process_vm_readv", SYS_process_vm_readv, { 0 /* getpid() */, 0, 0, 0, 0, 0 } },
        { "process_vm_writev", SYS_process_vm_writev, { 0 /* getpid() */, 0, 0, 0, 0, 0 } },
#ifdef SYS_pidfd_getfd
        { "pidfd_getfd", SYS_pidfd_getfd, { -1, -1, 0 } },
#endif
        { "bpf", SYS_bpf, { -1, 0, 0 } },
        { "userfaultfd", SYS_userfaultfd, { -1 } },
#ifdef SYS_io_uring_setup
        { "io_uring_setup", SYS_io_uring_setup, { 0, 0 } },
        { "io_uring_enter", SYS_io_uring_enter, { -1, 0, 0, 0, 0, 0 } },
        { "io_uring_register", SYS_io_uring_register, { -1, 0, 0, 0 } },
#endif
        { "keyctl", SYS_keyctl, { -1 } },
        { "add_key", SYS_add_key, { 0, 0, 0, 0, 0 } },
        { "request_key", SYS_request_key, { 0, 0, 0, 0 } },
        { "perf_event_open", SYS_perf_event_open, { 0, 0, -1, -1, 0 } },
        { "mount", SYS_mount, { 0, 0, 0, 0, 0 } },
        { "umount2", SYS_umount2, { 0, 0 } },
#ifdef SYS_fsopen
        { "fsopen", SYS_fsopen, { 0, 0 } },
        { "fsconfig", SYS_fsconfig, { -1, 0, 0, 0, 0 } },
        { "fsmount", SYS_fsmount, { -1, 0, 0 } },
        { "fspick", SYS_fspick, { -1, 0, 0 } },
        { "move_mount", SYS_move_mount, { -1, 0, -1, 0, 0 } },
        { "open_tree", SYS_open_tree, { -1, 0, 0 } },
#endif
#ifdef SYS_mount_setattr
        { "mount_setattr", SYS_mount_setattr, { -1, 0, 0, 0, 0 } },
#endif
        { "pivot_root", SYS_pivot_root, { 0, 0 } },
#ifdef SYS_kexec_file_load
        { "kexec_file_load", SYS_kexec_file_load, { -1, -1, 0, 0, -1 } },
#endif
        { "init_module", SYS_init_module, { 0, 0, 0 } },
        { "finit_module", SYS_finit_module, { -1, 0, 0 } },
        { "delete_module", SYS_delete_module, { 0, 0 } },
        { "open_by_handle_at", SYS_open_by_handle_at, { -1, 0, 0 } },
};
static size_t refused_call;

static void do_refused_call(void) {
        long a[6];

        memcpy(a, refused_calls[refused_call].args, sizeof(a));
        if (refused_calls[refused_call].nr == SYS_process_vm_readv ||
            refused_calls[refused_call].nr == SYS_process_vm_writev)
                a[0] = getpid();
#if !defined(HAVE_LSAN) && !defined(__SANITIZE_LEAK__)
        if (refused_calls[refused_call].nr == SYS_ptrace)
                a[1] = getpid(); /* our own thread group: EPERM */
#endif
        (void) syscall(refused_calls[refused_call].nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        _exit(4);
}

TEST(other_refused_calls_kill) {
        for (refused_call = 0; refused_call < ELEMENTSOF(refused_calls); refused_call++)
                assert_killed_by_sigsys(run_sandboxed(do_refused_call), refused_calls[refused_call].name);
}

/* The sockets the worker makes pass: Varlink's, sd_notify()'s and the journal's (AF_UNIX), and
 * sd-device's monitor (netlink, NETLINK_KOBJECT_UEVENT), whose multicast group it joins. */
static void do_sockets_the_worker_makes(void) {
        static const int unix_types[] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET };
        struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = 1 };
        int fd, pair[2];

        for (size_t i = 0; i < ELEMENTSOF(unix_types); i++) {
                fd = socket(AF_UNIX, unix_types[i] | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        _exit(10 + (int) i);
                close(fd);
                if (socketpair(AF_UNIX, unix_types[i] | SOCK_CLOEXEC, 0, pair) < 0)
                        _exit(20 + (int) i);
                close(pair[0]);
                close(pair[1]);
        }
        fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_KOBJECT_UEVENT);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                _exit(30);
        close(fd);
}

TEST(sockets_the_worker_makes_pass) {
        assert_exit_ok(run_sandboxed(do_sockets_the_worker_makes), "AF_UNIX and uevent sockets");
}

/* Every other: another family (EAFNOSUPPORT, as RestrictAddressFamilies= says it), or netlink
 * of another protocol (EPROTONOSUPPORT). Each is first made without the filter; one this kernel
 * lacks proves nothing, and is passed over, but AF_INET and NETLINK_ROUTE are everywhere. */
static const struct {
        const char *name;
        int family, type, protocol, error;
} refused_sockets[] = {
        { "AF_INET", AF_INET, SOCK_STREAM, 0, EAFNOSUPPORT },
        { "AF_INET6", AF_INET6, SOCK_DGRAM, 0, EAFNOSUPPORT },
        { "AF_PACKET", AF_PACKET, SOCK_DGRAM, 0, EAFNOSUPPORT },
        { "AF_ALG", AF_ALG, SOCK_SEQPACKET, 0, EAFNOSUPPORT },
        { "AF_VSOCK", AF_VSOCK, SOCK_STREAM, 0, EAFNOSUPPORT },
        { "NETLINK_ROUTE", AF_NETLINK, SOCK_RAW, NETLINK_ROUTE, EPROTONOSUPPORT },
        { "NETLINK_SOCK_DIAG", AF_NETLINK, SOCK_DGRAM, NETLINK_SOCK_DIAG, EPROTONOSUPPORT },
        { "NETLINK_AUDIT", AF_NETLINK, SOCK_RAW, NETLINK_AUDIT, EPROTONOSUPPORT },
        { "NETLINK_GENERIC", AF_NETLINK, SOCK_RAW, NETLINK_GENERIC, EPROTONOSUPPORT },
        { "NETLINK_CONNECTOR", AF_NETLINK, SOCK_DGRAM, NETLINK_CONNECTOR, EPROTONOSUPPORT },
        { "NETLINK_NETFILTER", AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER, EPROTONOSUPPORT },
        { "NETLINK_XFRM", AF_NETLINK, SOCK_RAW, NETLINK_XFRM, EPROTONOSUPPORT },
};
static size_t refused_socket;

static void do_refused_socket(void) {
        int fd = socket(refused_sockets[refused_socket].family, refused_sockets[refused_socket].type | SOCK_CLOEXEC,
                        refused_sockets[refused_socket].protocol);

        if (fd >= 0)
                _exit(4);
        _exit(errno == refused_sockets[refused_socket].error ? 0 : 5);
}

static void do_unfiltered_socket(void) {
        int fd = socket(refused_sockets[refused_socket].family, refused_sockets[refused_socket].type | SOCK_CLOEXEC,
                        refused_sockets[refused_socket].protocol);

        _exit(fd >= 0 ? 0 : 4);
}

static int run_unfiltered(void (*f)(void)) {
        int status;
        pid_t pid;

        fflush(NULL);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                f();
                _exit(0);
        }
        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        return status;
}

TEST(other_sockets_fail) {
        unsigned tried = 0;

        for (refused_socket = 0; refused_socket < ELEMENTSOF(refused_sockets); refused_socket++) {
                int status = run_unfiltered(do_unfiltered_socket);
                bool everywhere = refused_sockets[refused_socket].family == AF_INET ||
                                  (refused_sockets[refused_socket].family == AF_NETLINK &&
                                   refused_sockets[refused_socket].protocol == NETLINK_ROUTE);

                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                        ASSERT_FALSE(everywhere);
                        printf("# %s: this kernel makes none, passed over\n", refused_sockets[refused_socket].name);
                        continue;
                }
                status = run_sandboxed(do_refused_socket);
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        TEST_FAIL("socket(%s): expected %s, got %s %d", refused_sockets[refused_socket].name,
                                  strerrorname_np(refused_sockets[refused_socket].error),
                                  WIFSIGNALED(status) ? "signal" : "exit status",
                                  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
                tried++;
        }
        ASSERT_TRUE(tried >= 2);
}

/* The same through the raw system call, with the high words of the arguments set, which the
 * kernel drops (its arguments are ints): still refused, and AF_UNIX still made. */
static void do_socket_with_high_words(void) {
        const long high = (long) (sizeof(long) > 4 ? 0x100000000LL : 0);
        long fd;

        fd = syscall(SYS_socket, high | AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, high | NETLINK_SOCK_DIAG);
        if (fd >= 0 || errno != EPROTONOSUPPORT)
                _exit(4);
        fd = syscall(SYS_socket, high | AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 || errno != EAFNOSUPPORT)
                _exit(5);
        fd = syscall(SYS_socket, high | AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, high);
        if (fd < 0)
                _exit(6);
}

TEST(socket_arguments_high_words_ignored) {
        assert_exit_ok(run_sandboxed(do_socket_with_high_words), "socket() with high words set");
}

/* socketpair() of another family fails as socket() does (the kernel pairs AF_UNIX, and a few
 * others: EOPNOTSUPP for netlink, without the filter). */
static void do_socketpair_netlink(void) {
        int pair[2];

        if (socketpair(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT, pair) >= 0)
                _exit(4);
        _exit(errno == EAFNOSUPPORT ? 0 : 5);
}

TEST(other_socketpairs_fail) {
        assert_exit_ok(run_sandboxed(do_socketpair_netlink), "socketpair(AF_NETLINK)");
}

/* A thread that was running before the filter went on is under it too (TSYNC). */
static atomic_int phase;

static void *fork_later(void *p) {
        while (atomic_load(&phase) == 0)
                usleep(1000);
        if (fork() == 0)
                _exit(0);
        _exit(4);
}

static void start_older_thread(void) {
        pthread_t t;

        if (pthread_create(&t, NULL, fork_later, NULL) != 0)
                _exit(90);
}

static void do_fork_from_older_thread(void) {
        atomic_store(&phase, 1);
        for (;;)
                pause();
}

TEST(older_threads_are_covered) {
        assert_killed_by_sigsys(run_sandboxed_after(start_older_thread, do_fork_from_older_thread),
                                "fork() in a thread started before the filter");
}

#if defined(__x86_64__) && !defined(__ILP32__)
/* getpid through the i386 entry (int 0x80): AUDIT_ARCH_I386, a foreign architecture. */
static void do_i386_syscall(void) {
        long r = 20; /* i386 __NR_getpid */

        __asm__ volatile("int $0x80" : "+a"(r) : : "memory");
        _exit(4);
}

TEST(foreign_architecture_kills) {
        int status;
        pid_t pid;

        /* Without the filter first: kernels without IA32 emulation refuse int 0x80 (SIGSEGV). */
        fflush(NULL);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                /* Quiet: a sanitizer reports the SIGSEGV. */
                int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);

                if (null_fd < 0 || dup2(null_fd, STDERR_FILENO) < 0)
                        _exit(90);
                do_i386_syscall();
        }
        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 4)
                SKIP("this kernel runs no i386 system calls");

        assert_killed_by_sigsys(run_sandboxed(do_i386_syscall), "i386 system call");
}

static void do_x32_syscall(void) {
        (void) syscall(0x40000000 | SYS_getpid);
        _exit(4);
}

TEST(x32_syscall_kills) {
        assert_killed_by_sigsys(run_sandboxed(do_x32_syscall), "x32 system call");
}
#endif

/* The real worker: "Seccomp: 2" (filter mode) in its status, and it serves. */
TEST(real_worker_is_filtered) {
        _cleanup_free_ char *status = NULL;
        Tsmd t;
        pid_t w;

        if (geteuid() != 0)
                SKIP("needs root (the monitor starts the worker as another user)");
        tsmd_start(&t, NULL);
        w = tsmd_worker_pid(&t);
        ASSERT_TRUE(w > 0);
        status = read_file(strf("/proc/%d/status", (int) w));
        ASSERT_NOT_NULL(status);
        if (!strstr(status, "\nSeccomp:\t2\n"))
                TEST_FAIL("the worker runs without a seccomp filter:\n%s", status);
        if (!strstr(status, "\nNoNewPrivs:\t1\n"))
                TEST_FAIL("the worker runs without no-new-privileges");
        /* And it serves: threads start (the audit writer), contexts open and are audited. */
        {
                _cleanup_(varlink_client_freep) VarlinkClient *c = tsmd_connect_guest(&t);

                ASSERT_TRUE(guest_open_context(c) >= 0);
        }
        ASSERT_TRUE(tsmd_is_running(&t) && tsmd_worker_pid(&t) == w);
        tsmd_teardown(&t);
}

TEST_MAIN()
