/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The audit sync thread. Runs in: worker (its own thread; touches the event loop only
 * through the eventfd).
 *
 * Locking: `lock` protects the two queues, the published space/stats and the flags. The
 * thread drops it while it writes, syncs or preallocates, so the loop never waits for the
 * disk: submitting is a list append and a condition signal.
 *
 * Ordering: one thread, one FIFO. Items complete in the order they were queued, so the
 * loop sees sequence numbers in order, and an item is only reported durable after the
 * fdatasync that covers it and every item before it in the same file. A reopen is an item
 * too: it happens after everything queued before it is written, before anything after it.
 */

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>

#include "audit-record.h"
#include "audit-sync.h"
#include "log.h"

#define IOV_BATCH 256

struct AuditSync {
        AuditFiles *files;
        AuditSyncMode mode;
        uint64_t prealloc_size;
        int event_fd;

        pthread_t thread;
        bool running;

        pthread_mutex_t lock;
        pthread_cond_t cond;
        /* Loop → thread. */
        AuditSyncItem *pending_head, **pending_tail;
        bool stop;
        bool want_space;
        uint64_t want_total;
        /* Thread → loop. */
        AuditSyncItem *done_head, **done_tail;
        AuditSyncSpace space;
        AuditSyncStats stats;
};

int audit_sync_new(AuditFiles *files, AuditSyncMode mode, uint64_t prealloc_size, AuditSync **ret) {
        AuditSync *s;

        assert(files);
        assert(ret);

        if (mode < 0 || mode >= _AUDIT_SYNC_MODE_MAX)
                return -EINVAL;

        s = new0(AuditSync, 1);
        if (!s)
                return -ENOMEM;
        s->files = files;
        s->mode = mode;
        s->prealloc_size = MAX(prealloc_size, (uint64_t) AUDIT_RECORD_MAX);
        s->pending_tail = &s->pending_head;
        s->done_tail = &s->done_head;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->cond, NULL);

        s->event_fd = RET_NERRNO(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (s->event_fd < 0) {
                int r = s->event_fd;
                audit_sync_free(s);
                return r;
        }

        *ret = s;
        return 0;
}

AuditSync *audit_sync_free(AuditSync *s) {
        if (!s)
                return NULL;
        audit_sync_stop(s);
        safe_close(s->event_fd);
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        return mfree(s);
}

int audit_sync_get_fd(AuditSync *s) {
        return s->event_fd;
}

/* Items from..to (exclusive) get error r. */
static void complete_range(AuditSyncItem *from, AuditSyncItem *to, int r) {
        for (AuditSyncItem *i = from; i != to; i = i->next)
                i->error = r;
}

static int write_iov(AuditFiles *f, struct iovec *iov, size_t n) {
        while (n > 0) {
                ssize_t k = f->ops->pwritev(f->fd, iov, (int) n, (off_t) f->size);
                if (k == -EINTR)
                        continue;
                if (k < 0)
                        return (int) k;
                if (k == 0)
                        return -EIO;
                f->size += (uint64_t) k;
                /* Past the preallocated tail (a burst the fstatvfs check let through). */
                f->alloc_end = MAX(f->alloc_end, f->size);
                /* Short write: skip what went out and go on with the rest. */
                while (n > 0 && (size_t) k >= iov->iov_len) {
                        k -= (ssize_t) iov->iov_len;
                        iov++;
                        n--;
                }
                if (n > 0) {
                        iov->iov_base = (char *) iov->iov_base + k;
                        iov->iov_len -= (size_t) k;
                }
        }
        return 0;
}

/* Writes and syncs one batch. Every item gets its result; returns the first error. */
static int write_batch(AuditSync *s, AuditSyncItem *batch, uint64_t *written, AuditSyncStats *stats) {
        AuditFiles *f = s->files;
        struct iovec iov[IOV_BATCH];
        AuditSyncItem *segment = batch;
        /* queued: bytes of this segment, for the caller's count; unwritten: those of them still
         * in iov, as the rest are in f->size already. */
        uint64_t queued = 0, unwritten = 0, margin;
        bool no_room = false; /* for a new file: this batch stays in the old one */
        size_t n = 0;
        int r;

        for (AuditSyncItem *i = batch; i; i = i->next) {
                uint64_t end = f->size + unwritten;

                if (!no_room && end > 0 && end + i->len > f->max_file_size) {
                        /* Everything before i must be durable before a newer file exists. */
                        r = write_iov(f, iov, n);
                        if (r < 0)
                                goto fail;
                        r = f->ops->fdatasync(f->fd);
                        stats->n_syncs++;
                        if (r < 0)
                                goto fail;
                        /* Acknowledged: a failure from here on must not take it back. */
                        f->synced = f->size;
                        complete_range(segment, i, 0);
                        *written += queued;
                        n = 0;
                        queued = unwritten = 0;
                        segment = i;
                        /* Reservations were counted against the old file's unused tail: the
                         * new one takes at least as much. */
                        margin = f->alloc_end > f->size ? f->alloc_end - f->size : 0;

                        r = audit_files_rotate(f, s->prealloc_size, margin);
                        if (r < 0)
                                goto fail;
                        if (r > 0)
                                /* Not rotated: the old file's tail has the room reserved, past
                                 * max_file_size. The next batch tries again. */
                                no_room = true;
                        else
                                stats->n_rotations++;
                }

                if (n == IOV_BATCH) {
                        r = write_iov(f, iov, n);
                        if (r < 0)
                                goto fail;
                        n = 0;
                        unwritten = 0;
                }
                iov[n++] = (struct iovec){ .iov_base = (void *) i->line, .iov_len = i->len };
                queued += i->len;
                unwritten += i->len;
        }

        r = write_iov(f, iov, n);
        if (r < 0)
                goto fail;
        r = f->ops->fdatasync(f->fd);
        stats->n_syncs++;
        if (r < 0)
                goto fail;
        f->synced = f->size;
        complete_range(segment, NULL, 0);
        *written += queued;
        return 0;

fail:
        complete_range(segment, NULL, r);
        /* Take back what was written but not acknowledged, so the file holds exactly the
         * acknowledged records. Only tried here: the reopen must manage it (see
         * reopen_files()). */
        (void) audit_files_take_back(f);
        return r;
}

/* Keeps the preallocated tail ahead of the write position. Returns the space error. */
static int ensure_space(AuditSync *s, uint64_t written_total, uint64_t want_total, bool *unsupported) {
        AuditFiles *f = s->files;
        uint64_t min_end, target_end;
        int r;

        if (*unsupported)
                return 0;

        min_end = f->size + (want_total > written_total ? want_total - written_total : 0);
        target_end = MAX(min_end, f->size + s->prealloc_size);
        /* Refill at half, so a steady stream costs one fallocate per prealloc_size/2 bytes. */
        if (f->alloc_end >= min_end && f->alloc_end >= f->size + s->prealloc_size / 2)
                return 0;

        r = audit_files_preallocate(f, target_end);
        if (r == -ENOSPC && min_end > f->alloc_end)
                r = audit_files_preallocate(f, min_end);
        else if (r == -ENOSPC)
                r = 0; /* the minimum is already there */
        if (r == -EOPNOTSUPP) {
                /* tmpfs before 3.5, some FUSE file systems: reserve falls back to statvfs. */
                *unsupported = true;
                return 0;
        }
        return r;
}

static void publish_space(AuditSync *s, uint64_t written_total, int space_error, bool unsupported,
                          int failed) {
        AuditFiles *f = s->files;

        s->space.written_total = written_total;
        s->space.alloc_total = written_total + (f->alloc_end > f->size ? f->alloc_end - f->size : 0);
        s->space.space_error = space_error;
        s->space.prealloc_unsupported = unsupported;
        s->space.failed = failed;
}

static void notify_loop(AuditSync *s) {
        /* Cannot fail short of a counter overflow, which would still leave it readable. */
        (void) eventfd_write(s->event_fd, 1);
}

/* Carries out a reopen (see AuditSyncReopen). Returns the new stream's failed state. */
static int reopen_files(AuditSync *s, AuditSyncReopen *ro) {
        int r;

        /* A file system that failed stays failed; an administrator mounts a working one in
         * its place, and this is where tsmd moves to it. */
        r = audit_files_reopen_directory(s->files);
        if (r >= 0) {
                ro->directory_changed = r > 0;
                /* SECURITY: after a failed write or sync the bytes past the last good sync may
                 * be in the page cache only, clean, their error reported once: a resume would
                 * read them as records, and no later sync would write or fail them. Appending
                 * after them would put acknowledged records behind bytes a power loss turns
                 * into zeros. While the cut fails the reopen does. (Another directory: the old
                 * one and its file are left.) */
                r = audit_files_take_back(s->files);
        }
        if (r >= 0)
                r = audit_files_resume(s->files, &ro->resume);
        ro->item.error = r;
        return ro->item.error;
}

static void *sync_thread(void *userdata) {
        AuditSync *s = userdata;

        pthread_mutex_lock(&s->lock);
        for (;;) {
                AuditSyncItem *batch, *last = NULL;
                AuditSyncStats delta = {};
                uint64_t written_total, want_total;
                int failed, space_error, r;
                bool unsupported, want, reopened = false;

                while (!s->pending_head && !s->stop && !s->want_space)
                        pthread_cond_wait(&s->cond, &s->lock);
                if (!s->pending_head && !s->want_space)
                        break; /* stop requested, queue drained */

                batch = s->pending_head;
                if (batch && s->mode == AUDIT_SYNC_PER_RECORD) {
                        s->pending_head = batch->next;
                        batch->next = NULL;
                } else
                        s->pending_head = NULL;
                if (!s->pending_head)
                        s->pending_tail = &s->pending_head;

                want = s->want_space;
                s->want_space = false;
                want_total = s->want_total;
                written_total = s->space.written_total;
                failed = s->space.failed;
                space_error = s->space.space_error;
                unsupported = s->space.prealloc_unsupported;
                pthread_mutex_unlock(&s->lock);

                /* Runs of records, each written as one batch, and the reopens between them in
                 * their place. */
                for (AuditSyncItem *i = batch; i;) {
                        AuditSyncItem *end = i, *rest;

                        if (i->reopen) {
                                failed = reopen_files(s, (AuditSyncReopen *) i);
                                /* A new stream, as audit_sync_start() begins one. */
                                written_total = want_total = 0;
                                want = unsupported = false;
                                space_error = failed == 0 ? ensure_space(s, 0, AUDIT_RECORD_MAX, &unsupported) : 0;
                                reopened = true;
                                i = i->next;
                                continue;
                        }

                        while (end->next && !end->next->reopen)
                                end = end->next;
                        rest = TAKE_PTR(end->next);
                        if (failed < 0)
                                /* SECURITY: after a failed write or sync nothing is written
                                 * until reopen, so no record lands after a hole. */
                                complete_range(i, NULL, failed);
                        else {
                                r = write_batch(s, i, &written_total, &delta);
                                if (r < 0) {
                                        failed = r;
                                        log_error_errno(r, "Failed to write audit log '%s': %m",
                                                        s->files->directory);
                                }
                                delta.n_batches++;
                        }
                        for (AuditSyncItem *j = i; j; j = j->next)
                                delta.n_records++;
                        end->next = rest;
                        i = rest;
                }
                if (failed == 0 && (batch || want)) {
                        r = ensure_space(s, written_total, want_total, &unsupported);
                        space_error = r < 0 ? r : 0;
                }

                pthread_mutex_lock(&s->lock);
                publish_space(s, written_total, space_error, unsupported, failed);
                if (reopened) {
                        /* What the loop wanted was room in the old stream. */
                        s->want_space = false;
                        s->want_total = 0;
                }
                s->stats.n_records += delta.n_records;
                s->stats.n_batches += delta.n_batches;
                s->stats.n_syncs += delta.n_syncs;
                s->stats.n_rotations += delta.n_rotations;
                if (batch) {
                        for (AuditSyncItem *i = batch; i; i = i->next)
                                last = i;
                        *s->done_tail = batch;
                        s->done_tail = &last->next;
                        notify_loop(s);
                }
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

int audit_sync_start(AuditSync *s, int failed) {
        sigset_t all, saved;
        bool unsupported = false;
        int r, space_error = 0;

        assert(s);
        assert(!s->running);
        assert(failed <= 0);

        /* Before the thread exists the files are ours: the first tail is ready when
         * audit_log_open() returns. */
        if (failed == 0)
                space_error = ensure_space(s, 0, AUDIT_RECORD_MAX, &unsupported);
        s->stop = false;
        s->want_space = false;
        s->want_total = 0;
        publish_space(s, 0, space_error, unsupported, failed);

        /* Signals belong to the event loop thread. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &saved);
        r = -pthread_create(&s->thread, NULL, sync_thread, s);
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r < 0)
                return r;
        s->running = true;
        return 0;
}

void audit_sync_stop(AuditSync *s) {
        assert(s);

        if (!s->running)
                return;
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        (void) pthread_join(s->thread, NULL);
        s->running = false;
}

void audit_sync_submit(AuditSync *s, AuditSyncItem *list) {
        AuditSyncItem *last = NULL;

        assert(s);
        assert(list);

        for (AuditSyncItem *i = list; i; i = i->next) {
                i->error = 0;
                last = i;
        }
        pthread_mutex_lock(&s->lock);
        if (!s->running) {
                /* No thread (it could not be restarted): report the items through the normal
                 * path rather than leaving them queued forever. */
                complete_range(list, NULL, s->space.failed < 0 ? s->space.failed : -ESHUTDOWN);
                *s->done_tail = list;
                s->done_tail = &last->next;
                notify_loop(s);
        } else {
                *s->pending_tail = list;
                s->pending_tail = &last->next;
                pthread_cond_signal(&s->cond);
        }
        pthread_mutex_unlock(&s->lock);
}

AuditSyncItem *audit_sync_take_completed(AuditSync *s) {
        AuditSyncItem *list;
        eventfd_t v;

        assert(s);

        (void) eventfd_read(s->event_fd, &v);
        pthread_mutex_lock(&s->lock);
        list = s->done_head;
        s->done_head = NULL;
        s->done_tail = &s->done_head;
        pthread_mutex_unlock(&s->lock);
        return list;
}

void audit_sync_want_space(AuditSync *s, uint64_t need_total) {
        assert(s);

        pthread_mutex_lock(&s->lock);
        s->want_total = MAX(s->want_total, need_total);
        s->want_space = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
}

void audit_sync_get_space(AuditSync *s, AuditSyncSpace *ret) {
        assert(s);
        assert(ret);

        pthread_mutex_lock(&s->lock);
        *ret = s->space;
        pthread_mutex_unlock(&s->lock);
}

void audit_sync_get_stats(AuditSync *s, AuditSyncStats *ret) {
        assert(s);
        assert(ret);

        pthread_mutex_lock(&s->lock);
        *ret = s->stats;
        pthread_mutex_unlock(&s->lock);
}
