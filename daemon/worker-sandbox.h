/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The worker's seccomp filter: it can start threads but never another process, nor run a
 * program, nor outlive its monitor, nor reach the kernel through calls it never makes (see
 * below). A compromised worker could otherwise fork, setsid() and keep the listening
 * sockets and the clients' iommufds in a child that neither the monitor's kill nor
 * PR_SET_PDEATHSIG (not inherited) reaches; nor open sockets it never needs (netlink's
 * NETLINK_SOCK_DIAG lists every socket on the host). Runs in: worker.
 */
#pragma once

/* Installs the filter on every thread of the calling process (needs no-new-privileges).
 * Afterwards fork(), vfork(), clone() without CLONE_THREAD or with a CLONE_NEW* flag, execve(),
 * execveat() and any system call of a foreign architecture kill the whole process with SIGSYS;
 * so do prctl(PR_SET_PDEATHSIG) with any signal but SIGKILL (a worker must die with its
 * monitor), unshare(), setns(), ptrace() (except in sanitized builds: LeakSanitizer needs it),
 * process_vm_readv/writev(), pidfd_getfd(), bpf(), userfaultfd(), io_uring, the keyrings,
 * perf_event_open(), the mount calls, pivot_root(), kexec and modules, open_by_handle_at().
 * clone3() fails with ENOSYS, so that pthread_create() falls back to clone(). socket() makes
 * AF_UNIX sockets, and AF_NETLINK ones of protocol NETLINK_KOBJECT_UEVENT only: other families
 * fail with EAFNOSUPPORT, other netlink protocols with EPROTONOSUPPORT; socketpair() makes
 * AF_UNIX pairs only (else EAFNOSUPPORT). Not checked where socketcall() makes sockets too
 * (i386, s390x, ppc64). -errno on failure. */
int worker_sandbox_apply(void);
