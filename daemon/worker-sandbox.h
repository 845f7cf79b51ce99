/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The worker's seccomp filter: it can start threads but never another process, nor run a
 * program, nor outlive its monitor, nor reach the kernel through calls it never makes (see
 * below). A compromised worker could otherwise fork, setsid() and keep the listening
 * sockets and the clients' iommufds in a child that neither the monitor's kill nor
 * PR_SET_PDEATHSIG (not inherited) reaches. Runs in: worker.
 */
#pragma once

/* Installs the filter on every thread of the calling process (needs no-new-privileges).
 * Afterwards fork(), vfork(), clone() without CLONE_THREAD or with a CLONE_NEW* flag, execve(),
 * execveat() and any system call of a foreign architecture kill the whole process with SIGSYS;
 * so do prctl(PR_SET_PDEATHSIG) with any signal but SIGKILL (a worker must die with its
 * monitor), unshare(), setns(), ptrace() (except in sanitized builds: LeakSanitizer needs it),
 * process_vm_readv/writev(), pidfd_getfd(), bpf(), userfaultfd(), io_uring, the keyrings,
 * perf_event_open(), the mount calls, pivot_root(), kexec and modules, open_by_handle_at().
 * clone3() fails with ENOSYS, so that pthread_create() falls back to clone(). -errno on
 * failure. */
int worker_sandbox_apply(void);
