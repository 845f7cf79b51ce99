/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Audit query threads. Runs in: worker (event loop thread, and one thread per query).
 *
 * Ownership: a query belongs to the runner from start to reaping. The loop thread alone links,
 * unlinks and frees; a query thread touches only its own query (filter, results, the cancel
 * flag it reads) until it appends it to `done` under the lock, and not at all after. The loop
 * joins the thread before it reads the results, so they need no lock.
 */

#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/queue.h>

#include "audit-query-runner.h"
#include "json-raw.h"
#include "json-util.h"
#include "log.h"

struct AuditQuery {
        AuditQueryRunner *runner;
        LIST_ENTRY(AuditQuery) entry;
        pthread_t thread;
        atomic_bool cancel;

        AuditQueryFilter filter;
        char *pci, *scope, *result, *event; /* the filter's strings */
        size_t limit;
        AuditQueryDoneCallback callback; /* NULL once cancelled */
        void *userdata;

        /* Written by the thread, read by the loop after joining it. The records found are kept
         * as their text (json-raw.h), serialized as they are found: as json-c trees they took ten
         * times as much, in the thread's malloc arena, which kept it after the reply. */
        JsonText text;
        size_t n_records;
        uint64_t seq_past_limit; /* the first matching record not kept; 0: none found */
        uint64_t seq_past_size;  /* the record that did not fit filter.max_text_bytes; 0: none */
        json_object *records;
        int error;
        AuditQueryStats stats;
        AuditQuery *done_next;
};

struct AuditQueryRunner {
        AuditFiles *files;
        const AuditFileOps *ops;
        unsigned max_queries, n_running;
        int event_fd;
        struct event *event;
        LIST_HEAD(, AuditQuery) queries;

        pthread_mutex_t lock;
        AuditQuery *done; /* thread → loop, under lock; any order */
};

static AuditQuery *query_free(AuditQuery *q) {
        if (!q)
                return NULL;
        json_text_done(&q->text);
        json_object_put(q->records);
        free(q->pci);
        free(q->scope);
        free(q->result);
        free(q->event);
        return mfree(q);
}

static int on_record(json_object *record, uint64_t seq, void *userdata) {
        AuditQuery *q = userdata;
        size_t before = q->text.len;
        int r;

        if (q->n_records >= q->limit) {
                q->seq_past_limit = seq; /* enough, and more match: from here it goes on */
                return 1;
        }
        if (q->n_records > 0) {
                r = json_text_append(&q->text, ",", 1);
                if (r < 0)
                        return r;
        }
        r = json_write_append(record, &q->text);
        if (r < 0)
                return r;
        if (q->n_records > 0 && q->text.len > q->filter.max_text_bytes) {
                q->text.len = before; /* it goes on from this one */
                q->text.data[before] = 0;
                q->seq_past_size = seq;
                return 1;
        }
        q->n_records++;
        return 0;
}

static void *query_thread(void *userdata) {
        AuditQuery *q = userdata;
        AuditQueryRunner *r = q->runner;
        _cleanup_free_ int *fds = NULL;

        fds = new(int, r->files->n_files);
        if (!fds)
                q->error = -ENOMEM;
        if (q->error == 0)
                q->error = audit_files_snapshot(r->files, fds);
        if (q->error == 0) {
                q->error = audit_query_fds(fds, r->files->n_files, &q->filter, r->ops, &q->cancel,
                                           on_record, q, &q->stats);
                q->stats.seq_past_limit = q->seq_past_limit;
                if (q->seq_past_size > 0)
                        q->stats.next_seq = q->seq_past_size;
                close_many(fds, r->files->n_files);
        }
        if (q->error == 0)
                q->error = json_raw_array_new(&q->text, q->n_records, &q->records);
        json_text_done(&q->text);

        pthread_mutex_lock(&r->lock);
        q->done_next = r->done;
        r->done = q;
        pthread_mutex_unlock(&r->lock);
        (void) eventfd_write(r->event_fd, 1);
        return NULL;
}

/* Joins it, unlinks it, reports it unless cancelled, frees it. */
static void query_reap(AuditQueryRunner *r, AuditQuery *q, int error) {
        AuditQueryDoneCallback cb = TAKE_PTR(q->callback);

        pthread_join(q->thread, NULL);
        LIST_REMOVE(q, entry);
        r->n_running--;
        if (cb) {
                if (error == 0)
                        error = q->error;
                cb(error, error < 0 ? NULL : TAKE_PTR(q->records), &q->stats, q->userdata);
        }
        query_free(q);
}

static void on_done(evutil_socket_t fd, short what, void *userdata) {
        AuditQueryRunner *r = userdata;
        AuditQuery *list;
        eventfd_t n;

        (void) eventfd_read(r->event_fd, &n);
        pthread_mutex_lock(&r->lock);
        list = TAKE_PTR(r->done);
        pthread_mutex_unlock(&r->lock);

        /* A callback may cancel a query of this list: it is reaped all the same, unreported. */
        while (list) {
                AuditQuery *q = list;

                list = q->done_next;
                query_reap(r, q, 0);
        }
}

int audit_query_runner_new(struct event_base *base, AuditFiles *files, const AuditFileOps *ops,
                           unsigned max_queries, AuditQueryRunner **ret) {
        _cleanup_(audit_query_runner_freep) AuditQueryRunner *r = NULL;

        assert_return(base, -EINVAL);
        assert_return(files, -EINVAL);
        assert_return(max_queries > 0, -EINVAL);
        assert_return(ret, -EINVAL);

        r = new0(AuditQueryRunner, 1);
        if (!r)
                return -ENOMEM;
        r->files = files;
        r->ops = ops ?: &audit_file_ops_default;
        r->max_queries = max_queries;
        LIST_INIT(&r->queries);
        pthread_mutex_init(&r->lock, NULL);
        r->event_fd = RET_NERRNO(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (r->event_fd < 0)
                return r->event_fd;
        r->event = event_new(base, r->event_fd, EV_READ | EV_PERSIST, on_done, r);
        if (!r->event || event_add(r->event, NULL) < 0)
                return -ENOMEM;

        *ret = TAKE_PTR(r);
        return 0;
}

AuditQueryRunner *audit_query_runner_free(AuditQueryRunner *r) {
        AuditQuery *q;

        if (!r)
                return NULL;

        LIST_FOREACH(q, &r->queries, entry)
                atomic_store(&q->cancel, true);
        while ((q = LIST_FIRST(&r->queries)))
                query_reap(r, q, -ECANCELED);
        r->done = NULL; /* all reaped: every thread is joined */

        if (r->event)
                event_free(r->event);
        safe_close(r->event_fd);
        pthread_mutex_destroy(&r->lock);
        return mfree(r);
}

static int strdup_or_null(const char *s, char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int audit_query_runner_start(AuditQueryRunner *r, const AuditQueryFilter *f, size_t limit,
                             AuditQueryDoneCallback cb, void *userdata, AuditQuery **ret) {
        AuditQuery *q;
        sigset_t all, saved;
        int k;

        assert_return(r, -EINVAL);
        assert_return(f, -EINVAL);
        assert_return(cb, -EINVAL);

        /* SECURITY: each query holds a thread and its results until it is reported. */
        if (r->n_running >= r->max_queries)
                return -EBUSY;

        q = new0(AuditQuery, 1);
        if (!q)
                return -ENOMEM;
        q->runner = r;
        q->filter = *f;
        q->limit = limit;
        q->callback = cb;
        q->userdata = userdata;
        if (strdup_or_null(f->pci, &q->pci) < 0 || strdup_or_null(f->scope, &q->scope) < 0 ||
            strdup_or_null(f->result, &q->result) < 0 || strdup_or_null(f->event, &q->event) < 0) {
                query_free(q);
                return -ENOMEM;
        }
        q->filter.pci = q->pci;
        q->filter.scope = q->scope;
        q->filter.result = q->result;
        q->filter.event = q->event;

        /* Signals belong to the event loop thread. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &saved);
        k = -pthread_create(&q->thread, NULL, query_thread, q);
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (k < 0) {
                query_free(q);
                return k;
        }
        LIST_INSERT_HEAD(&r->queries, q, entry);
        r->n_running++;

        if (ret)
                *ret = q;
        return 0;
}

unsigned audit_query_runner_get_n_running(const AuditQueryRunner *r) {
        return r ? r->n_running : 0;
}

AuditQuery *audit_query_cancel(AuditQuery *q) {
        if (!q)
                return NULL;
        q->callback = NULL;
        atomic_store(&q->cancel, true);
        return NULL;
}
