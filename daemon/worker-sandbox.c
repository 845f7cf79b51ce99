/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The worker's seccomp filter, hand-written BPF (no libseccomp). Runs in: worker. */

#include <endian.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "macro.h"
#include "worker-sandbox.h"

#if defined(__x86_64__) && !defined(__ILP32__)
#  define ARCH_NATIVE AUDIT_ARCH_X86_64
/* x32 system calls arrive as AUDIT_ARCH_X86_64 too, with this bit in the number. */
#  define X32_SYSCALL_BIT 0x40000000U
#elif defined(__i386__)
#  define ARCH_NATIVE AUDIT_ARCH_I386
#elif defined(__aarch64__)
#  define ARCH_NATIVE AUDIT_ARCH_AARCH64
#elif defined(__arm__) && defined(__ARM_EABI__) && __BYTE_ORDER == __LITTLE_ENDIAN
#  define ARCH_NATIVE AUDIT_ARCH_ARM
#elif defined(__riscv) && __riscv_xlen == 64
#  define ARCH_NATIVE AUDIT_ARCH_RISCV64
#elif defined(__powerpc64__) && __BYTE_ORDER == __LITTLE_ENDIAN
#  define ARCH_NATIVE AUDIT_ARCH_PPC64LE
#elif defined(__powerpc64__)
#  define ARCH_NATIVE AUDIT_ARCH_PPC64
#elif defined(__s390x__)
#  define ARCH_NATIVE AUDIT_ARCH_S390X
#elif defined(__mips__) && _MIPS_SIM == _ABI64 && __BYTE_ORDER == __LITTLE_ENDIAN
#  define ARCH_NATIVE AUDIT_ARCH_MIPSEL64
#elif defined(__loongarch_lp64) && defined(AUDIT_ARCH_LOONGARCH64)
#  define ARCH_NATIVE AUDIT_ARCH_LOONGARCH64
#else
#  error "worker-sandbox.c: add this architecture's AUDIT_ARCH_* (the filter checks it)"
#endif

#ifndef __NR_clone3
#  define __NR_clone3 435 /* the same number on every architecture since Linux 5.3 */
#endif

/* The low 32 bits of argument n: BPF loads 32-bit words. */
#if __BYTE_ORDER == __LITTLE_ENDIAN
#  define ARG_LO(n) offsetof(struct seccomp_data, args[n])
#else
#  define ARG_LO(n) (offsetof(struct seccomp_data, args[n]) + 4)
#endif

/* clone()'s flags: the first argument, except where the stack comes first (CLONE_BACKWARDS2).
 * Only the low 32 bits hold flags. */
#if defined(__s390x__)
#  define CLONE_FLAGS_LO ARG_LO(1)
#else
#  define CLONE_FLAGS_LO ARG_LO(0)
#endif
/* Every new namespace clone() takes (CLONE_NEWTIME is unshare()'s and clone3()'s only: in
 * clone()'s flags 0x80 is part of the exit signal). */
#define CLONE_NEW_NAMESPACE_FLAGS \
        (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET)

/* LeakSanitizer stops the world at exit from a helper that shares our memory but is not a
 * thread (sanitizer_stoptheworld_linux_libcdep.cpp), and which ptrace()s our threads to stop
 * them. Sanitized builds are tests only, never shipped: there, exactly these clone() flags and
 * ptrace() pass too, so that leak reports still work. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_LEAK__)
#  define SANITIZED 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
#    define SANITIZED 1
#  endif
#endif
#define LSAN_TRACER_CLONE_FLAGS (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_UNTRACED)

/* SECURITY: killing rather than failing with EPERM. Nothing in the worker starts a process or
 * a program, or makes any other call refused here (tsmd-worker links no code that does, once
 * started: discovery_enter_sysfs_root() is the monitor's), so a try is a compromised worker: killed at
 * once it cannot probe further, and the monitor sees a worker dead of SIGSYS and starts a
 * fresh one. The whole process, not the thread: a thread left behind would keep serving. */
#define KILL BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS)
#define ALLOW BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
#define FAIL(e) BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))
#define ON_NR(nr, action) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), action

static const struct sock_filter worker_filter[] = {
        /* Another architecture's system call numbers mean other calls: none is allowed. */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH_NATIVE, 1, 0),
        KILL,
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#ifdef X32_SYSCALL_BIT
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, X32_SYSCALL_BIT, 0, 1),
        KILL,
#endif
        /* clone3() passes its flags in memory, which a filter cannot read: ENOSYS, and glibc's
         * pthread_create() falls back to clone(), whose flags it can. */
        ON_NR(__NR_clone3, BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA))),
#ifdef __NR_fork
        ON_NR(__NR_fork, KILL),
#endif
#ifdef __NR_vfork
        ON_NR(__NR_vfork, KILL),
#endif
        ON_NR(__NR_execve, KILL),
#ifdef __NR_execveat
        ON_NR(__NR_execveat, KILL),
#endif
        /* What the worker never needs and a compromised one would reach the kernel's less
         * hardened corners through, or other processes: namespaces (a user namespace gives
         * capabilities in it), other processes' memory and fds, BPF, userfaultfd and io_uring,
         * the keyrings, perf events, mounts, kernels and modules, files by handle. The unit's
         * SystemCallFilter= and RestrictNamespaces= refuse them too, but not to a worker
         * started by hand or by tests. */
        ON_NR(__NR_unshare, KILL),
        ON_NR(__NR_setns, KILL),
#ifndef SANITIZED
        ON_NR(__NR_ptrace, KILL),
#endif
        ON_NR(__NR_process_vm_readv, KILL),
        ON_NR(__NR_process_vm_writev, KILL),
#ifdef __NR_pidfd_getfd
        ON_NR(__NR_pidfd_getfd, KILL),
#endif
        ON_NR(__NR_bpf, KILL),
        ON_NR(__NR_userfaultfd, KILL),
#ifdef __NR_io_uring_setup
        ON_NR(__NR_io_uring_setup, KILL),
        ON_NR(__NR_io_uring_enter, KILL),
        ON_NR(__NR_io_uring_register, KILL),
#endif
        ON_NR(__NR_keyctl, KILL),
        ON_NR(__NR_add_key, KILL),
        ON_NR(__NR_request_key, KILL),
        ON_NR(__NR_perf_event_open, KILL),
        ON_NR(__NR_mount, KILL),
#ifdef __NR_umount
        ON_NR(__NR_umount, KILL),
#endif
        ON_NR(__NR_umount2, KILL),
#ifdef __NR_fsopen
        ON_NR(__NR_fsopen, KILL),
        ON_NR(__NR_fsconfig, KILL),
        ON_NR(__NR_fsmount, KILL),
        ON_NR(__NR_fspick, KILL),
        ON_NR(__NR_move_mount, KILL),
        ON_NR(__NR_open_tree, KILL),
#endif
#ifdef __NR_mount_setattr
        ON_NR(__NR_mount_setattr, KILL),
#endif
        ON_NR(__NR_pivot_root, KILL),
#ifdef __NR_kexec_load
        ON_NR(__NR_kexec_load, KILL),
#endif
#ifdef __NR_kexec_file_load
        ON_NR(__NR_kexec_file_load, KILL),
#endif
        ON_NR(__NR_init_module, KILL),
        ON_NR(__NR_finit_module, KILL),
        ON_NR(__NR_delete_module, KILL),
        ON_NR(__NR_open_by_handle_at, KILL),
        /* SECURITY: sockets of the families and protocols the worker uses, and no other: AF_UNIX
         * (Varlink, sd_notify(), the journal mirror, NSS lookups of the policy's names), and of
         * AF_NETLINK only NETLINK_KOBJECT_UEVENT (sd-device's monitor, for hot-plug). The unit's
         * RestrictAddressFamilies=AF_UNIX AF_NETLINK lets it have any netlink protocol:
         * NETLINK_SOCK_DIAG lists every socket on the host and its peer, NETLINK_ROUTE the
         * network, NETLINK_AUDIT and the rest reach further into the kernel.
         * Failing, not killing: an NSS module (libnss-ldap) may try AF_INET, and gets what
         * RestrictAddressFamilies= gives it, EAFNOSUPPORT. The arguments are ints: the low 32
         * bits are all the kernel reads. Where socket() can also go through socketcall() (i386,
         * s390x, ppc64), whose arguments are in memory, that way is not checked: as systemd's
         * RestrictAddressFamilies=, which is not enforced on those at all. */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 8),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 5, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_NETLINK, 1, 0),
        FAIL(EAFNOSUPPORT),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(2)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NETLINK_KOBJECT_UEVENT, 1, 0),
        FAIL(EPROTONOSUPPORT),
        ALLOW,
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socketpair, 0, 4),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 1, 0),
        FAIL(EAFNOSUPPORT),
        ALLOW,
        /* prctl(PR_SET_PDEATHSIG) would undo the SIGKILL the worker gets when the monitor dies
         * (worker-spawn.c), or make it a signal it ignores: only SIGKILL, what it already is,
         * passes (LeakSanitizer's helper sets that for itself). The option is an int; the
         * signal's high word need not be checked: set, the kernel refuses it as no signal. */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_prctl, 0, 6),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PR_SET_PDEATHSIG, 0, 2),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(1)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SIGKILL, 0, 1),
        ALLOW,
        KILL,
        /* clone() makes a thread (CLONE_THREAD: same thread group, killed with the worker) in
         * the worker's namespaces, or nothing. */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 1, 0),
        ALLOW,
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, CLONE_FLAGS_LO),
#ifdef SANITIZED
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, LSAN_TRACER_CLONE_FLAGS, 3, 0),
#endif
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_NEW_NAMESPACE_FLAGS, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 1, 0),
        KILL,
        ALLOW,
};

static int threads_count(void) {
        FILE *f = fopen("/proc/self/status", "re");
        char line[256];
        int n = -ENODATA;

        if (!f)
                return negative_errno();
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Threads: %d", &n) == 1)
                        break;
        fclose(f);
        return n;
}

int worker_sandbox_apply(void) {
        struct sock_fprog prog = {
                .len = ELEMENTSOF(worker_filter),
                .filter = (struct sock_filter *) worker_filter,
        };
        long r;

        /* TSYNC: threads already running get the filter too, or the call fails. */
        r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
        if (r > 0)
                return -EBUSY; /* the id of a thread that could not take it */
        if (r == 0)
                return 0;
        if (errno != ENOSYS)
                return negative_errno();

        /* No seccomp() (valgrind does not emulate it): prctl() covers only the calling thread
         * and those it starts later, so only while it is the only one. */
        r = threads_count();
        if (r < 0)
                return r;
        if (r != 1)
                return -EBUSY;
        return RET_NERRNO(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0));
}
