/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The monitor's state, shared by monitor.c (sockets, the worker's life, signals),
 * monitor-files.c (the files it loads, reloads) and monitor-emu-state.c. Internal to tsmd:
 * tsmd.c includes monitor.h. Runs in: monitor. */
#pragma once

#include "daemon-config.h"
#include "files-on-disk.h"
#include "last-good.h"
#include "monitor-contexts.h"
#include "monitor-dispatch.h"
#include "monitor.h"
#include "policy.h"
#include "signal-source.h"
#include "tsm-platform.h"

/* A set of files that loaded whole (last_good_load()). */
typedef struct LoadedFiles {
        DaemonConfig config;
        Policy *policy;
        int fd; /* the sealed memfd of the bytes parsed; -EBADF: nothing loaded */
        LastGoodReads reads; /* how the load found the files (none: restored from a memfd) */
} LoadedFiles;

struct Monitor {
        struct event_base *base;
        DaemonConfig config; /* as tsmd started: its keys read at start hold for every worker */
        char *start_settings; /* those keys, for each worker's HELLO (daemon_config_format_start_only()) */
        char *config_path;
        bool config_optional;
        char *socket_path, *guest_socket_path;
        TsmPlatform *platform;
        MonitorContexts *contexts;
        MonitorDispatch *dispatch;
        MonitorListenSocket *sockets;
        size_t n_sockets, allocated_sockets;
        Policy *policy; /* for the gates only (scope_granted(), device_listed()); NULL: none loaded */
        int last_good;  /* the bytes of the files that loaded last, sealed (last-good.h); -EBADF: none */
        int stored_last_good; /* the fd store's, from before a restart of tsmd, until the start took it or not */
        bool files_refused;   /* files_at_start() would not start on the files: monitor_refused_files() */
        LoadedFiles reload_files; /* what the worker's RELOAD loaded, until it commits it */

        char *worker_path; /* for logs: it runs from worker_binary */
        int worker_binary;
        char *worker_argv[5];
        uid_t worker_uid;
        gid_t worker_gid;
        int state_dir_lock; /* dir-lock.h: held for our life; -EBADF: none */
        int audit_dir_lock; /* the same, of the audit directory, which each worker locks through it */
        pid_t worker_pid;
        /* Killed workers given up on (not exited KillTimeoutSec= after SIGKILL, held in the
         * kernel): reaped when they go, and nothing else. */
        pid_t *lingering;
        size_t n_lingering, allocated_lingering;
        int channel;
        struct event *ev_channel;
        struct event *ev_channel_again; /* messages read and not handled: the next round's */
        uint64_t worker_start_usec, last_sign_of_life_usec, backoff_usec;
        uint64_t worker_draining_usec; /* when its STATUS first said draining, 0 before */
        bool worker_ready; /* the current worker sent READY */
        bool reload_pending; /* SIGHUP came before a worker could take it: sent at READY */
        /* The sender of the last SIGHUP that waits for READY (reload_pending): passed on with it. */
        pid_t reload_sender_pid;
        uid_t reload_sender_uid;
        char *reload_sender_unit;
        TsmPrivWorkerEnd worker_killed_for; /* COMPROMISED or UNRESPONSIVE once the monitor kills it */
        bool ready_sent;   /* READY=1 went to the service manager */
        bool stopping;
        bool stop_killed; /* stopping, and the worker was killed for taking too long */

        uint64_t status_sent_usec; /* the last STATUS= sent */
        char status_waiting[256];  /* the STATUS= waiting for status_timer, "" if none */

        struct event *sigterm, *sigint, *sigchld;
        SignalSource *sighup; /* with its sender: the reload's audit record names it */
        struct event *restart_timer, *stop_timer, *tick, *status_timer;
        struct event *kill_timer; /* a worker killed while we run on: given up on when it fires */

        /* monitor-disk-changes.c: the files of the set in force that changed on disk. */
        FilesOnDisk *files_on_disk; /* what the set in force read; NULL: no files kept */
        int disk_inotify;           /* watches their directories; -EBADF: none */
        struct event *disk_inotify_event, *disk_check_timer;
        bool disk_polling;          /* they cannot all be watched: checked every few seconds */
        char *disk_changed;         /* the paths the last check found, NUL-terminated each */
        size_t disk_changed_size;
        uint32_t n_disk_changed;
        char *disk_sent;            /* the same, as the worker served last got them */
        size_t disk_sent_size;
        uint32_t n_disk_sent;
        bool disk_sent_valid;       /* disk_sent is what that worker knows */
};

/* monitor-files.c */
void loaded_files_done(LoadedFiles *f);
bool scope_granted(const char *pci_address, TsmBackendType backend, const char *scope, void *userdata);
bool device_listed(const char *pci_address, TsmBackendType backend, void *userdata);
int worker_dirs_prepare(Monitor *m, const DaemonConfig *config);
int worker_dirs_lock(Monitor *m);
int apply_files(Monitor *m, char **ret_error);
int files_at_start(Monitor *m);
int on_worker_reload(void *userdata, bool commit, int *ret_fd, char **ret_reason, bool *ret_policy_failed);
void reload_alone(Monitor *m);

/* monitor-disk-changes.c */
/* A set was applied (last_good_fd: its memfd, -EBADF: none kept; config: its settings; reads:
 * how its load found the files): the disk is compared with it from now on, at once, and the
 * worker served is told. */
void disk_changes_loaded(Monitor *m, int last_good_fd, const DaemonConfig *config, const LastGoodReads *reads);
/* The worker just got READY: it is told what differs, if anything. */
void disk_changes_worker_ready(Monitor *m);
void disk_changes_done(Monitor *m);

/* monitor-emu-state.c */
void emulated_state_save(Monitor *m);
void emulated_state_load(Monitor *m, int fd);
