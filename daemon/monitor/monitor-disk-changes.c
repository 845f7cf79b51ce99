/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Which files of the set in force changed on disk since its load (files-on-disk.h), for the
 * worker's GetStatus (FILES_CHANGED, tsm-priv.h). The monitor reads the files, so it checks:
 * the worker has no access to them and gets the paths only.
 *
 * When: the directories that hold them are watched (inotify), and those that hold the targets
 * of those that are symlinks (files_on_disk_foreach_dir(), found again at each load), and a
 * check runs DISK_CHECK_DELAY_USEC after the first change in them, once for all the changes of
 * that while; and at every load applied (apply_loaded()). SECURITY: no client can make tsmd check,
 * let alone read: only a change in those directories, which only root (the load's trust checks)
 * and root's tools write, does; a check stats the files and lists the drop-in directory, and
 * reads a file only if its stat changed since a read found it the same (files-on-disk.h). Where
 * the directories cannot be watched (inotify's limits), or a symlink leads into one that is not
 * (files_on_disk_links_unwatched(): too many, or one others may write), a check runs every
 * DISK_POLL_USEC.
 *
 * Runs in: monitor.
 */

#include <limits.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "event-util.h"
#include "log.h"
#include "monitor-internal.h"

/* Editors write in several steps (a temporary file, a rename): told once they are done. */
#define DISK_CHECK_DELAY_USEC (100 * 1000ULL)
#define DISK_POLL_USEC (5 * 1000 * 1000ULL)

#define DISK_WATCH_MASK                                                                            \
        (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | \
         IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

_Static_assert(2 + 2 * (uint64_t) POLICY_DROPINS_MAX + 1 <= TSM_PRIV_FILES_MAX,
               "FILES_CHANGED names every file a check may find");

static void disk_check_schedule(Monitor *m, uint64_t usec) {
        struct timeval tv = timeval_from_usec(usec);

        if (m->disk_check_timer && !evtimer_pending(m->disk_check_timer, NULL))
                (void) evtimer_add(m->disk_check_timer, &tv);
}

static void watch_dir(const char *dir, void *userdata) {
        Monitor *m = userdata;

        if (m->disk_inotify < 0)
                return;
        /* A directory that is not there yet: its parent's watch sees it come (the drop-in
         * directory's), or the file it would hold is none either way. */
        if (inotify_add_watch(m->disk_inotify, dir, DISK_WATCH_MASK) < 0 && errno != ENOENT && errno != ENOTDIR &&
            !m->disk_polling) {
                log_warning_errno(-errno, "Cannot watch '%s' for changes of the configuration files, checking them "
                                          "every %llu s instead: %m", dir, DISK_POLL_USEC / 1000000ULL);
                m->disk_polling = true;
        }
}

/* Tells the worker, if it serves, what the last check found, unless it knows it. */
static void disk_changes_send(Monitor *m) {
        if (!m->worker_ready || m->stopping)
                return;
        if (m->disk_sent_valid && m->n_disk_sent == m->n_disk_changed && m->disk_sent_size == m->disk_changed_size &&
            (m->disk_changed_size == 0 || memcmp(m->disk_sent, m->disk_changed, m->disk_changed_size) == 0))
                return;
        free(m->disk_sent);
        m->disk_sent = NULL;
        m->disk_sent_valid = false;
        if (monitor_dispatch_files_changed(m->dispatch, m->n_disk_changed, m->disk_changed, m->disk_changed_size) < 0)
                return; /* a failed send ends the worker; the next gets it at READY */
        if (m->disk_changed_size > 0) {
                m->disk_sent = malloc(m->disk_changed_size);
                if (!m->disk_sent)
                        return; /* sent again next time, no harm */
                memcpy(m->disk_sent, m->disk_changed, m->disk_changed_size);
        }
        m->disk_sent_size = m->disk_changed_size;
        m->n_disk_sent = m->n_disk_changed;
        m->disk_sent_valid = true;
}

static void disk_check(Monitor *m) {
        char *paths = NULL;
        size_t size = 0;
        int n;

        if (!m->files_on_disk)
                return;
        /* A directory made since (the drop-in directory) is watched from now on. */
        files_on_disk_foreach_dir(m->files_on_disk, watch_dir, m);
        n = files_on_disk_check(m->files_on_disk, now_realtime_usec(), &paths, &size);
        if (n < 0) {
                log_oom();
                return;
        }
        if (n > 0 && m->n_disk_changed == 0)
                log_info("Configuration or policy files changed on disk since they loaded (%d), not applied until "
                         "a reload: '%s'%s.", n, paths, n > 1 ? ", ..." : "");
        free(m->disk_changed);
        m->disk_changed = paths;
        m->disk_changed_size = size;
        m->n_disk_changed = (uint32_t) n;
        disk_changes_send(m);
        if (m->disk_polling)
                disk_check_schedule(m, DISK_POLL_USEC);
}

static void on_disk_check_timer(evutil_socket_t fd, short what, void *userdata) {
        disk_check(userdata);
}

static void on_disk_inotify(evutil_socket_t fd, short what, void *userdata) {
        Monitor *m = userdata;
        _Alignas(struct inotify_event) char buf[4096];

        /* What changed does not matter: the check looks at every file. */
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
        }
        disk_check_schedule(m, DISK_CHECK_DELAY_USEC);
}

static void disk_watch_stop(Monitor *m) {
        if (m->disk_inotify_event) {
                event_free(m->disk_inotify_event);
                m->disk_inotify_event = NULL;
        }
        m->disk_inotify = safe_close(m->disk_inotify);
        if (m->disk_check_timer)
                evtimer_del(m->disk_check_timer);
}

void disk_changes_loaded(Monitor *m, int last_good_fd, const DaemonConfig *config, const LastGoodReads *reads) {
        FilesOnDisk *f = NULL;
        int r;

        disk_watch_stop(m);
        m->files_on_disk = files_on_disk_free(m->files_on_disk);
        m->disk_polling = false;
        /* What differed from the set before is not what differs from this one: none is named
         * until a check of this one says (the worker too is told so). */
        m->disk_changed = mfree(m->disk_changed);
        m->disk_changed_size = 0;
        m->n_disk_changed = 0;
        if (!m->config_path || last_good_fd < 0) {
                disk_changes_send(m);
                return;
        }
        r = files_on_disk_new(last_good_fd, reads, m->config_path, config->policy_file, config->policy_dropin_dir, &f);
        if (r < 0) {
                log_warning_errno(r, "Cannot keep what the configuration files loaded to tell their changes on disk: %m");
                disk_changes_send(m);
                return;
        }
        m->files_on_disk = f;
        if (!m->disk_check_timer) {
                m->disk_check_timer = evtimer_new(m->base, on_disk_check_timer, m);
                if (!m->disk_check_timer) {
                        log_oom();
                        return;
                }
        }
        m->disk_inotify = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (m->disk_inotify >= 0) {
                m->disk_inotify_event = event_new(m->base, m->disk_inotify, EV_READ | EV_PERSIST, on_disk_inotify, m);
                if (!m->disk_inotify_event || event_add(m->disk_inotify_event, NULL) < 0)
                        disk_watch_stop(m);
        }
        if (m->disk_inotify < 0) {
                log_warning_errno(-errno, "Cannot watch the configuration files for changes, checking them every "
                                          "%llu s instead: %m", DISK_POLL_USEC / 1000000ULL);
                m->disk_polling = true;
        }
        if (!m->disk_polling && files_on_disk_links_unwatched(f)) {
                log_info("A configuration or policy file is a symlink into a directory tsmd does not watch (one "
                         "others may write, or more than %d), checking the files every %llu s too.",
                         FILES_ON_DISK_LINK_DIRS_MAX, DISK_POLL_USEC / 1000000ULL);
                m->disk_polling = true;
        }
        /* The reference is new: what differs from it now, told before the reload's answer. */
        disk_check(m);
}

void disk_changes_worker_ready(Monitor *m) {
        /* A new worker knows of none. */
        m->disk_sent = mfree(m->disk_sent);
        m->disk_sent_size = 0;
        m->n_disk_sent = 0;
        m->disk_sent_valid = m->n_disk_changed == 0;
        disk_changes_send(m);
}

void disk_changes_done(Monitor *m) {
        disk_watch_stop(m);
        if (m->disk_check_timer)
                event_free(m->disk_check_timer);
        m->disk_check_timer = NULL;
        m->files_on_disk = files_on_disk_free(m->files_on_disk);
        m->disk_changed = mfree(m->disk_changed);
        m->disk_sent = mfree(m->disk_sent);
}
