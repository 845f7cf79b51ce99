/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Kernel TSM calls, one thread per busy device. Runs in: monitor.
 *
 * Locking: `lock` protects the lanes, their queues, a call's state, the links between a bind
 * and its undo, and the done list. A lane's thread drops it for the ioctl. `abandoned` and the
 * callback belong to the loop's thread alone, which is the only one to look at a call once it
 * is done.
 */

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include "event-util.h"
#include "iommufd-transport.h"
#include "kernel-lanes.h"
#include "log.h"
#include "ratelimit.h"

/* Generous for a function that fills a struct and calls ioctl(), sanitizers included. */
#define KERNEL_LANE_STACK_SIZE (256U * 1024U)

typedef struct Lane Lane;

static const char *const kernel_op_table[_KERNEL_OP_MAX] = {
        [KERNEL_OP_REQUEST] = "request",
        [KERNEL_OP_BIND] = "bind",
        [KERNEL_OP_UNBIND] = "unbind",
        [KERNEL_OP_WRITE] = "write",
};

typedef enum KernelCallState {
        KERNEL_CALL_QUEUED,
        KERNEL_CALL_RUNNING,
        KERNEL_CALL_DONE,
} KernelCallState;

struct KernelCall {
        KernelLanes *lanes;
        Lane *lane;          /* while queued or running */
        char *lane_name;     /* for the log, after the lane is gone */
        KernelCallState state;
        bool abandoned;
        bool kept; /* its callback kept it (kernel_call_keep()); the loop's thread's */

        KernelOp op;
        uint64_t start_usec; /* CLOCK_MONOTONIC, at submission (an undo: its bind's) */
        uint64_t done_usec;  /* CLOCK_MONOTONIC, as the kernel answered */
        void *tag;           /* abandoned in the kernel: who for, for the late callback */
        size_t tag_size;
        int fd; /* our duplicate of the VMM's iommufd; a bind's stays until delivery, for an undo */
        char *path; /* a write's file */
        TsmUapiVersion version;
        uint32_t vdevice_id, scope_number;
        void *request;
        size_t request_len;
        void *response;
        size_t response_size, response_len;
        size_t request_unconsumed; /* a request's, offered no response buffer */
        int result;

        /* A bind abandoned in the kernel: its undo, until the bind returns. */
        KernelCall *undo;
        bool has_undo;
        /* An undo (an unbind nobody waits for): the bind, until it returns, then its result. */
        bool is_undo;
        KernelCall *undoes;
        int bind_result;

        KernelCallDone callback;
        void *userdata;
        TAILQ_ENTRY(KernelCall) entry; /* in its lane's queue, then in the done list */
};

struct Lane {
        KernelLanes *lanes;
        char *name;
        pthread_cond_t wake; /* a call was queued, or the lanes are stopping */
        TAILQ_HEAD(, KernelCall) queue;
        LIST_ENTRY(Lane) entry;
};

struct KernelLanes {
        struct event_base *base;
        uint64_t linger_usec;
        int event_fd;           /* a lane thread → the loop: calls are done */
        struct event *done_event;

        pthread_mutex_t lock;
        pthread_cond_t thread_ended;
        LIST_HEAD(, Lane) lanes; /* each with its thread */
        unsigned n_threads;
        bool stopping;
        TAILQ_HEAD(, KernelCall) done;
        RateLimit late_log; /* the loop's thread's */
        KernelLateCallback late_cb;
        void *late_userdata;
};

static KernelCall *call_free(KernelCall *c) {
        if (!c)
                return NULL;
        safe_close(c->fd);
        free(c->path);
        free(c->lane_name);
        free(c->request);
        free(c->response);
        free(c->tag);
        return mfree(c);
}

static void *memdup(const void *p, size_t n) {
        void *q = malloc(n);

        return q ? memcpy(q, p, n) : NULL;
}

static void lane_free(Lane *lane) {
        pthread_cond_destroy(&lane->wake);
        free(lane->name);
        free(lane);
}

/* SECURITY: the path was made by the caller from an address the inventory knows; O_NOFOLLOW, so
 * that a link put in its place leads nowhere. */
static int write_file_at(const char *path, const void *data, size_t len) {
        _cleanup_close_ int fd = -EBADF;
        ssize_t k;

        fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        k = write(fd, data, len);
        if (k < 0)
                return negative_errno();
        return (size_t) k == len ? 0 : -EIO;
}

/* On the lane's thread, without the lock: the kernel may take seconds. */
static int call_run(KernelCall *c) {
        switch (c->op) {
        case KERNEL_OP_REQUEST:
                return iommufd_tsm_request(c->fd, c->version, c->vdevice_id, c->scope_number, c->request,
                                                c->request_len, c->response, c->response_size, &c->response_len,
                                                &c->request_unconsumed);
        case KERNEL_OP_BIND:
                return iommufd_tsm_bind(c->fd, c->version, c->vdevice_id);
        case KERNEL_OP_UNBIND:
                return iommufd_tsm_unbind(c->fd, c->version, c->vdevice_id);
        case KERNEL_OP_WRITE:
                return write_file_at(c->path, c->request, c->request_len);
        default:
                return -EINVAL; /* kernel_lanes_submit() let no other op in */
        }
}

static void *lane_thread(void *userdata) {
        Lane *lane = userdata;
        KernelLanes *l = lane->lanes;

        pthread_mutex_lock(&l->lock);
        for (;;) {
                KernelCall *c = TAILQ_FIRST(&lane->queue);

                if (!c) {
                        struct timespec until;
                        uint64_t ns;

                        if (l->stopping)
                                break;
                        clock_gettime(CLOCK_MONOTONIC, &until);
                        ns = (uint64_t) until.tv_nsec + l->linger_usec * 1000ULL;
                        until.tv_sec += (time_t) (ns / 1000000000ULL);
                        until.tv_nsec = (long) (ns % 1000000000ULL);
                        if (pthread_cond_timedwait(&lane->wake, &l->lock, &until) == ETIMEDOUT &&
                            TAILQ_EMPTY(&lane->queue))
                                break;
                        continue;
                }

                TAILQ_REMOVE(&lane->queue, c, entry);
                c->state = KERNEL_CALL_RUNNING;
                pthread_mutex_unlock(&l->lock);

                /* An undo's bind ran before it on this lane: if it failed, nothing is to undo. */
                c->result = c->is_undo && c->bind_result < 0 ? c->bind_result : call_run(c);
                /* The iommufd reference goes as soon as the kernel is done with it; a bind's
                 * once nothing can undo it, and under the lock, as an abandonment may be copying
                 * it for an undo meanwhile. */
                if (c->op != KERNEL_OP_BIND)
                        c->fd = safe_close(c->fd);

                pthread_mutex_lock(&l->lock);
                if (c->op == KERNEL_OP_BIND && c->result < 0)
                        c->fd = safe_close(c->fd);
                if (c->undo) {
                        c->undo->bind_result = c->result;
                        c->undo->undoes = NULL;
                        c->undo = NULL;
                }
                c->done_usec = now_monotonic_usec();
                c->state = KERNEL_CALL_DONE;
                c->lane = NULL;
                TAILQ_INSERT_TAIL(&l->done, c, entry);
                /* Cannot fail short of a counter overflow, which would still leave it readable. */
                (void) eventfd_write(l->event_fd, 1);
        }

        /* Under the lock: a call queued from now on finds no lane and starts a new one. */
        LIST_REMOVE(lane, entry);
        lane_free(lane);
        l->n_threads--;
        pthread_cond_broadcast(&l->thread_ended);
        pthread_mutex_unlock(&l->lock);
        return NULL;
}

/* Too late for the VMM, which was told it failed: the journal says what the device did after
 * all. As often as a hung TSM answers late: rate limited. */
static void log_late(KernelLanes *l, const KernelCall *c) {
        char what[64];

        /* A write names its file, the other calls their vDevice. */
        if (c->op == KERNEL_OP_WRITE)
                snprintf(what, sizeof(what), "'%s'", strrchr(c->path, '/') ? strrchr(c->path, '/') + 1 : c->path);
        else
                snprintf(what, sizeof(what), "vDevice %" PRIu32, c->vdevice_id);
        if (c->result < 0)
                log_full_ratelimited(&l->late_log, LOG_WARNING,
                                     "Kernel TSM %s of %s (%s) failed after its requester gave up: %s",
                                     kernel_op_table[c->op], c->lane_name, what, strerror(-c->result));
        else if (!c->has_undo) /* its undo says it */
                log_full_ratelimited(&l->late_log, LOG_WARNING,
                                     "Kernel TSM %s of %s (%s) succeeded after its requester gave up; "
                                     "the answer is dropped.",
                                     kernel_op_table[c->op], c->lane_name, what);
}

/* Once for each bind undone: the kernel changed a device behind tsmd's record, and changed it
 * back, or could not. Not rate limited, as each is a device's state; binds are few. */
static void log_undo(const KernelCall *c) {
        if (c->bind_result < 0)
                return; /* the bind failed: nothing was undone, and the bind says so */
        if (c->result < 0)
                log_error_errno(c->result,
                                "Kernel TSM bind of %s (vDevice %" PRIu32 ") succeeded after its requester gave up, "
                                "and unbinding it again failed; the kernel may keep it bound: %m",
                                c->lane_name, c->vdevice_id);
        else
                log_warning("Kernel TSM bind of %s (vDevice %" PRIu32 ") succeeded after its requester gave up; "
                            "unbound it again, to match tsmd's record.",
                            c->lane_name, c->vdevice_id);
}

/* The late answer goes to whoever keeps a record of the device (tsmd's audit log). Its latency
 * is the kernel's, up to its answer: a kept one given up on may be abandoned long after. */
static void report_late(KernelLanes *l, const KernelCall *c, const void *tag, size_t tag_size) {
        KernelLate late = {
                .op = c->op,
                .undo = c->is_undo,
                .lane = c->lane_name,
                .vdevice_id = c->vdevice_id,
                .scope_number = c->scope_number,
                .result = c->result,
                .response_len = c->op == KERNEL_OP_REQUEST && c->result >= 0 ? c->response_len : 0,
                .request_unconsumed = c->op == KERNEL_OP_REQUEST && c->result >= 0 ? c->request_unconsumed : 0,
                .latency_usec = c->done_usec - c->start_usec,
                .tag = tag,
                .tag_size = tag_size,
        };

        if (l->late_cb)
                l->late_cb(&late, l->late_userdata);
}

static void on_calls_done(evutil_socket_t fd, short what, void *userdata) {
        KernelLanes *l = userdata;
        TAILQ_HEAD(, KernelCall) done = TAILQ_HEAD_INITIALIZER(done);
        KernelCall *c;
        eventfd_t v;

        (void) eventfd_read(l->event_fd, &v);
        pthread_mutex_lock(&l->lock);
        TAILQ_CONCAT(&done, &l->done, entry);
        pthread_mutex_unlock(&l->lock);

        while ((c = TAILQ_FIRST(&done))) {
                TAILQ_REMOVE(&done, c, entry);
                if (c->is_undo) {
                        log_undo(c);
                        if (c->bind_result >= 0) /* else nothing was undone */
                                report_late(l, c, c->tag, c->tag_size);
                } else if (c->abandoned) {
                        log_late(l, c);
                        report_late(l, c, c->tag, c->tag_size);
                } else {
                        c->callback(c, c->result, c->userdata);
                        if (c->kept)
                                continue; /* its owner's now */
                }
                call_free(c);
        }
}

int kernel_lanes_new(struct event_base *base, uint64_t linger_usec, KernelLanes **ret) {
        _cleanup_(kernel_lanes_freep) KernelLanes *l = NULL;
        pthread_condattr_t attr;

        assert(base);
        assert(ret);

        l = new0(KernelLanes, 1);
        if (!l)
                return -ENOMEM;
        l->base = base;
        l->linger_usec = linger_usec;
        l->late_log = RATELIMIT(KERNEL_LATE_LOG_INTERVAL_USEC, KERNEL_LATE_LOG_BURST);
        LIST_INIT(&l->lanes);
        TAILQ_INIT(&l->done);
        pthread_mutex_init(&l->lock, NULL);
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&l->thread_ended, &attr);
        pthread_condattr_destroy(&attr);

        l->event_fd = RET_NERRNO(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (l->event_fd < 0)
                return l->event_fd;
        l->done_event = event_new(base, l->event_fd, EV_READ | EV_PERSIST, on_calls_done, l);
        if (!l->done_event || event_add(l->done_event, NULL) < 0)
                return -ENOMEM;

        *ret = TAKE_PTR(l);
        return 0;
}

void kernel_lanes_set_late_callback(KernelLanes *l, KernelLateCallback cb, void *userdata) {
        l->late_cb = cb;
        l->late_userdata = userdata;
}

KernelLanes *kernel_lanes_free(KernelLanes *l) {
        KernelCall *c;
        Lane *lane;

        if (!l)
                return NULL;

        pthread_mutex_lock(&l->lock);
        l->stopping = true;
        LIST_FOREACH(lane, &l->lanes, entry) {
                while ((c = TAILQ_FIRST(&lane->queue))) {
                        TAILQ_REMOVE(&lane->queue, c, entry);
                        if (c->undoes) /* its bind is in the kernel still */
                                c->undoes->undo = NULL;
                        call_free(c);
                }
                pthread_cond_signal(&lane->wake);
        }
        while (l->n_threads > 0)
                pthread_cond_wait(&l->thread_ended, &l->lock);
        pthread_mutex_unlock(&l->lock);

        while ((c = TAILQ_FIRST(&l->done))) {
                TAILQ_REMOVE(&l->done, c, entry);
                call_free(c);
        }
        if (l->done_event)
                event_free(l->done_event);
        safe_close(l->event_fd);
        pthread_cond_destroy(&l->thread_ended);
        pthread_mutex_destroy(&l->lock);
        return mfree(l);
}

/* Under the lock. */
static int lane_get(KernelLanes *l, const char *name, Lane **ret) {
        pthread_attr_t thread_attr;
        pthread_condattr_t attr;
        sigset_t all, saved;
        pthread_t thread;
        Lane *lane;
        int r;

        LIST_FOREACH(lane, &l->lanes, entry)
                if (streq(lane->name, name)) {
                        *ret = lane;
                        return 0;
                }

        lane = new0(Lane, 1);
        if (!lane)
                return -ENOMEM;
        lane->name = strdup(name);
        if (!lane->name) {
                free(lane);
                return -ENOMEM;
        }
        lane->lanes = l;
        TAILQ_INIT(&lane->queue);
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&lane->wake, &attr);
        pthread_condattr_destroy(&attr);

        /* Detached, and with a small stack: a host may have hundreds of devices busy at once,
         * and a lane only copies structs into the kernel. Signals belong to the loop's thread. */
        pthread_attr_init(&thread_attr);
        pthread_attr_setdetachstate(&thread_attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&thread_attr, KERNEL_LANE_STACK_SIZE);
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &saved);
        r = -pthread_create(&thread, &thread_attr, lane_thread, lane);
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        pthread_attr_destroy(&thread_attr);
        if (r < 0) {
                lane_free(lane);
                return r;
        }
        LIST_INSERT_HEAD(&l->lanes, lane, entry);
        l->n_threads++;
        *ret = lane;
        return 0;
}

/* A call, not yet queued. */
static int call_new(KernelLanes *l, const char *lane_name, const KernelCallArgs *args, KernelCall **ret) {
        KernelCall *c;
        int r;

        c = new0(KernelCall, 1);
        if (!c)
                return -ENOMEM;
        *c = (KernelCall){
                .lanes = l,
                .op = args->op,
                .start_usec = now_monotonic_usec(),
                .fd = -EBADF,
                .version = args->version,
                .vdevice_id = args->vdevice_id,
                .scope_number = args->scope_number,
                .request_len = args->request_len,
                .response_size = args->response_size,
        };
        c->lane_name = strdup(lane_name);
        c->path = args->op == KERNEL_OP_WRITE ? strdup(args->path) : NULL;
        c->request = malloc(MAX(args->request_len, (size_t) 1));
        /* SECURITY: zeroed, as the VMM gets all the TSM reports as written, and a TSM may say so
         * of bytes it never wrote; they must not be what this memory held (another VM's). */
        c->response = calloc(1, MAX(args->response_size, (size_t) 1));
        if (!c->lane_name || !c->request || !c->response || (args->op == KERNEL_OP_WRITE && !c->path)) {
                call_free(c);
                return -ENOMEM;
        }
        if (args->request_len > 0)
                memcpy(c->request, args->request, args->request_len);
        if (args->op == KERNEL_OP_WRITE) {
                *ret = c; /* no iommufd: the thread opens the file */
                return 0;
        }
        c->fd = RET_NERRNO(fcntl(args->iommufd, F_DUPFD_CLOEXEC, 3));
        if (c->fd < 0) {
                r = c->fd;
                call_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

/* Under the lock: after the calls queued on its lane before it. */
static int call_queue(KernelLanes *l, KernelCall *c) {
        Lane *lane;
        int r;

        r = lane_get(l, c->lane_name, &lane);
        if (r < 0)
                return r;
        c->lane = lane;
        c->state = KERNEL_CALL_QUEUED;
        TAILQ_INSERT_TAIL(&lane->queue, c, entry);
        pthread_cond_signal(&lane->wake);
        return 0;
}

int kernel_lanes_submit(KernelLanes *l, const char *lane_name, const KernelCallArgs *args, KernelCallDone cb,
                        void *userdata, KernelCall **ret) {
        KernelCall *c;
        int r;

        assert(l);
        assert(lane_name);
        assert(args);
        assert(cb);

        if (args->op < 0 || args->op >= _KERNEL_OP_MAX || (args->op == KERNEL_OP_WRITE && !args->path))
                return -EINVAL;
        r = call_new(l, lane_name, args, &c);
        if (r < 0)
                return r;
        c->callback = cb;
        c->userdata = userdata;

        pthread_mutex_lock(&l->lock);
        r = call_queue(l, c);
        pthread_mutex_unlock(&l->lock);
        if (r < 0) {
                call_free(c);
                return r;
        }

        if (ret)
                *ret = c;
        return 0;
}

/* Under the lock: the requester of a bind the kernel has (or had) gave up on it, and records the
 * device as not bound (gone, or the bind failed). Should the kernel bind it after all, an unbind
 * brings it back to that record. Queued now, on the device's lane, which runs one call at a
 * time in order: after the calls queued before (they were asked of a device being bound), and
 * ahead of any asked from now on, a VMM's new bind of the device among them, which must not be
 * undone. */
static int bind_queue_undo(KernelLanes *l, KernelCall *bind) {
        KernelCallArgs args = {
                .op = KERNEL_OP_UNBIND,
                .iommufd = bind->fd, /* kept for this (see lane_thread()) */
                .version = bind->version,
                .vdevice_id = bind->vdevice_id,
        };
        KernelCall *undo;
        int r;

        r = call_new(l, bind->lane_name, &args, &undo);
        if (r < 0)
                return r;
        undo->is_undo = true;
        undo->start_usec = bind->start_usec;
        if (bind->tag) {
                undo->tag = memdup(bind->tag, bind->tag_size);
                if (!undo->tag) {
                        call_free(undo);
                        return -ENOMEM;
                }
                undo->tag_size = bind->tag_size;
        }
        r = call_queue(l, undo);
        if (r < 0) {
                call_free(undo);
                return r;
        }
        if (bind->state == KERNEL_CALL_DONE)
                undo->bind_result = bind->result;
        else {
                /* Filled in as the bind returns, before the undo's turn on the same lane. */
                bind->undo = undo;
                undo->undoes = bind;
        }
        bind->has_undo = true;
        return 0;
}

void kernel_call_abandon(KernelCall *c) {
        kernel_call_abandon_tagged(c, NULL, 0);
}

bool kernel_call_abandon_tagged(KernelCall *c, const void *tag, size_t tag_size) {
        KernelLanes *l;
        void *copy = NULL;
        int r = 0;

        if (!c)
                return false;
        l = c->lanes;
        assert(tag_size <= KERNEL_LATE_TAG_MAX);

        if (c->kept) {
                /* Answered, and given up on before its owner passed the answer on: told now, as
                 * it would be had the kernel answered later. In no list, and the loop's thread's
                 * alone: no lock, and the tag is read, not copied. Nothing is undone: its owner
                 * had the result, a bind's too, and drops it knowingly. */
                report_late(l, c, tag, tag_size);
                call_free(c);
                return true;
        }

        pthread_mutex_lock(&l->lock);
        if (c->state == KERNEL_CALL_QUEUED) {
                /* Not started: the kernel never sees it. */
                TAILQ_REMOVE(&c->lane->queue, c, entry);
                pthread_mutex_unlock(&l->lock);
                call_free(c);
                return false;
        }
        /* Running, or done and not yet delivered: freed on delivery. Once is all it takes (a
         * second bind undo would outlive the first's link to the bind). */
        if (c->abandoned) {
                pthread_mutex_unlock(&l->lock);
                return true;
        }
        c->abandoned = true;
        /* Outside the hot path: only a call the kernel has (or had) copies its tag. Without
         * memory, its late answer is reported untagged. */
        if (tag && tag_size > 0 && (copy = memdup(tag, tag_size))) {
                c->tag = TAKE_PTR(copy);
                c->tag_size = tag_size;
        }
        if (c->op == KERNEL_OP_BIND && !(c->state == KERNEL_CALL_DONE && c->result < 0))
                r = bind_queue_undo(l, c);
        pthread_mutex_unlock(&l->lock);
        if (r < 0)
                log_error_errno(r, "Cannot undo the kernel TSM bind of %s (vDevice %" PRIu32 ") its requester gave up "
                                "on; should it succeed, the kernel keeps it bound: %m",
                                c->lane_name, c->vdevice_id);
        return true;
}

bool kernel_call_cancel_queued(KernelCall *c) {
        KernelLanes *l;

        if (!c || c->kept)
                return false;
        l = c->lanes;
        pthread_mutex_lock(&l->lock);
        if (c->state != KERNEL_CALL_QUEUED) {
                pthread_mutex_unlock(&l->lock);
                return false;
        }
        TAILQ_REMOVE(&c->lane->queue, c, entry);
        pthread_mutex_unlock(&l->lock);
        call_free(c);
        return true;
}

void kernel_call_keep(KernelCall *c) {
        assert(c);
        assert(c->state == KERNEL_CALL_DONE && !c->abandoned && !c->is_undo);

        c->kept = true;
}

void kernel_call_delivered(KernelCall *c) {
        if (!c)
                return;
        assert(c->kept);
        call_free(c);
}

void *kernel_call_take_response(KernelCall *c, size_t *ret_len) {
        assert(c);
        assert(c->state == KERNEL_CALL_DONE);

        if (ret_len)
                *ret_len = c->result >= 0 ? c->response_len : 0;
        return TAKE_PTR(c->response);
}

size_t kernel_call_get_request_unconsumed(const KernelCall *c) {
        assert(c);
        assert(c->state == KERNEL_CALL_DONE);

        return c->op == KERNEL_OP_REQUEST && c->result >= 0 ? c->request_unconsumed : 0;
}

unsigned kernel_lanes_n_threads(KernelLanes *l) {
        unsigned n;

        pthread_mutex_lock(&l->lock);
        n = l->n_threads;
        pthread_mutex_unlock(&l->lock);
        return n;
}
