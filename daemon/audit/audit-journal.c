/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The journal mirror of the audit log. Runs in: worker (loop thread + mirror thread). */

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include "audit-journal.h"
#include "escape.h"
#include "ratelimit.h"

/* The most fields a record makes (audit_journal_format()): every field it can have, and three
 * of the journal's own. */
#define JOURNAL_FIELDS_MAX 32

typedef struct JournalMessage {
        struct JournalMessage *next;
        char **fields;
        size_t n_fields;
} JournalMessage;

struct AuditJournal {
        pthread_t thread;
        bool running;
        AuditJournalSendFn send;
        size_t max_queued;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        JournalMessage *head, **tail;
        size_t n_queued;
        bool stop;
        /* The event loop thread's alone. */
        uint64_t n_dropped;
        uint64_t n_dropped_unlogged; /* since the last line about them */
        const char *drop_reason;     /* the last one's */
        RateLimit drop_log;
};

static void fields_free(char **fields, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(fields[i]);
        free(fields);
}

static JournalMessage *message_free(JournalMessage *m) {
        if (!m)
                return NULL;
        fields_free(m->fields, m->n_fields);
        return mfree(m);
}

static int add_field(char **fields, size_t *n, const char *format, ...) _printf_(3, 4);
static int add_field(char **fields, size_t *n, const char *format, ...) {
        va_list ap;
        int k;

        va_start(ap, format);
        k = vasprintf(&fields[*n], format, ap);
        va_end(ap);
        if (k < 0) {
                fields[*n] = NULL;
                return -ENOMEM;
        }
        (*n)++;
        return 0;
}

/* MESSAGE is one line of text (`journalctl -o cat`, plain exports): a string a client chose, an
 * unknown scope's name, must not begin another line that reads like a record of its own. The
 * TSMD_* fields carry it as it came, and the journal keeps their newlines. */
static const char *message_safe(const char *s, char **buf) {
        if (!s)
                return "n/a";
        if (terminal_is_safe(s, 0))
                return s;
        if (terminal_escape(s, 0, buf) < 0)
                return "?";
        return *buf;
}

int audit_journal_format(const AuditRecord *r, char ***ret, size_t *ret_n) {
        _cleanup_free_ char *event = NULL, *pci = NULL, *scope = NULL, *result = NULL;
        char uid[24] = "-", count[32] = "";
        char **fields;
        size_t n = 0;
        int k = 0;

        assert(r);
        assert(ret);
        assert(ret_n);

        if (r->uid != AUDIT_UID_INVALID)
                (void) snprintf(uid, sizeof(uid), "%" PRIu32, (uint32_t) r->uid);

        fields = new0(char *, JOURNAL_FIELDS_MAX);
        if (!fields)
                return -ENOMEM;

#define ADD(...)                                                                                   \
        do {                                                                                       \
                if (k >= 0 && n < JOURNAL_FIELDS_MAX)                                              \
                        k = add_field(fields, &n, __VA_ARGS__);                                    \
        } while (0)

        /* A summary's count in the line too: 3000 refusals must not read as one. */
        if (r->count > 0)
                (void) snprintf(count, sizeof(count), " count=%" PRIu64, r->count);
        ADD("MESSAGE=tsmd audit: seq=%" PRIu64 " event=%s uid=%s pci=%s scope=%s result=%s%s",
            r->seq, message_safe(r->event, &event), uid, message_safe(r->pci, &pci), message_safe(r->scope, &scope),
            message_safe(r->result, &result), count);
        ADD("MESSAGE_ID=%s", AUDIT_JOURNAL_MESSAGE_ID);
        ADD("PRIORITY=%i", audit_record_is_error(r) ? LOG_NOTICE : LOG_INFO);
        ADD("TSMD_SEQ=%" PRIu64, r->seq);
        ADD("TSMD_EVENT=%s", r->event);
        if (r->uid != AUDIT_UID_INVALID)
                ADD("TSMD_UID=%" PRIu32, (uint32_t) r->uid);
        if (r->gid != AUDIT_GID_INVALID)
                ADD("TSMD_GID=%" PRIu32, (uint32_t) r->gid);
        if (r->pid > 0)
                ADD("TSMD_PID=%" PRIi32, (int32_t) r->pid);
        if (r->unit)
                ADD("TSMD_UNIT=%s", r->unit);
        if (r->context_id != AUDIT_U64_NONE)
                ADD("TSMD_CONTEXT=%" PRIu64, r->context_id);
        if (r->vdevice_id != AUDIT_U64_NONE)
                ADD("TSMD_VDEVICE=%" PRIu64, r->vdevice_id);
        if (r->pci)
                ADD("TSMD_PCI=%s", r->pci);
        if (r->backend)
                ADD("TSMD_BACKEND=%s", r->backend);
        if (r->scope)
                ADD("TSMD_SCOPE=%s", r->scope);
        if (r->scope_number >= 0)
                ADD("TSMD_SCOPE_NUMBER=%" PRIi64, r->scope_number);
        if (r->request_size != AUDIT_U64_NONE)
                ADD("TSMD_REQUEST_SIZE=%" PRIu64, r->request_size);
        if (r->response_size != AUDIT_U64_NONE)
                ADD("TSMD_RESPONSE_SIZE=%" PRIu64, r->response_size);
        if (r->request_unconsumed > 0)
                ADD("TSMD_REQUEST_UNCONSUMED=%" PRIu64, r->request_unconsumed);
        if (r->result)
                ADD("TSMD_RESULT=%s", r->result);
        if (r->latency_usec != AUDIT_U64_NONE)
                ADD("TSMD_LATENCY_USEC=%" PRIu64, r->latency_usec);
        /* The rest of what the log's line has: the journal's copy is the whole record. */
        if (r->method)
                ADD("TSMD_METHOD=%s", r->method);
        if (r->rule)
                ADD("TSMD_RULE=%s", r->rule);
        if (r->reason)
                ADD("TSMD_REASON=%s", r->reason);
        if (r->signalled)
                ADD("TSMD_SIGNALLED=%s", r->signalled);
        if (r->count > 0)
                ADD("TSMD_COUNT=%" PRIu64, r->count);
        if (r->original_seq > 0)
                ADD("TSMD_ORIGINAL_SEQ=%" PRIu64, r->original_seq);
        if (r->late_id > 0)
                ADD("TSMD_LATE_ID=%" PRIu64, r->late_id);
        if (r->repaired_bytes > 0)
                ADD("TSMD_REPAIRED_BYTES=%" PRIu64, r->repaired_bytes);
        if (r->owed_since_usec > 0)
                ADD("TSMD_OWED_SINCE_USEC=%" PRIu64, r->owed_since_usec);
#undef ADD

        if (k < 0) {
                fields_free(fields, n);
                return k;
        }
        *ret = fields;
        *ret_n = n;
        return 0;
}

static void *journal_thread(void *userdata) {
        AuditJournal *j = userdata;

        pthread_mutex_lock(&j->lock);
        for (;;) {
                struct iovec iov[JOURNAL_FIELDS_MAX];
                JournalMessage *m;

                while (!j->head && !j->stop)
                        pthread_cond_wait(&j->cond, &j->lock);
                m = j->head;
                if (!m)
                        break;
                j->head = m->next;
                if (!j->head)
                        j->tail = &j->head;
                j->n_queued--;
                pthread_mutex_unlock(&j->lock);

                for (size_t i = 0; i < m->n_fields; i++)
                        iov[i] = (struct iovec){ m->fields[i], strlen(m->fields[i]) };
                (void) j->send(iov, (int) m->n_fields);
                message_free(m);

                pthread_mutex_lock(&j->lock);
        }
        pthread_mutex_unlock(&j->lock);
        return NULL;
}

int audit_journal_new(unsigned max_queued, AuditJournalSendFn send, AuditJournal **ret) {
        sigset_t all, saved;
        AuditJournal *j;
        int r;

        assert(max_queued > 0);
        assert(ret);

        j = new0(AuditJournal, 1);
        if (!j)
                return -ENOMEM;
        j->send = send ?: sd_journal_sendv;
        j->max_queued = max_queued;
        j->drop_log = RATELIMIT(AUDIT_JOURNAL_DROP_LOG_INTERVAL_USEC, 1);
        j->tail = &j->head;
        pthread_mutex_init(&j->lock, NULL);
        pthread_cond_init(&j->cond, NULL);

        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &saved);
        r = -pthread_create(&j->thread, NULL, journal_thread, j);
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r < 0) {
                audit_journal_free(j);
                return r;
        }
        j->running = true;

        *ret = j;
        return 0;
}

/* One line for the drops since the last (the rate limit holds the others back), with their count. */
static void log_dropped(AuditJournal *j) {
        log_warning("Audit journal mirror dropped %" PRIu64 " records since its last message about drops "
                    "(%" PRIu64 " since it started; the last because %s): the audit log has them, the journal "
                    "does not.",
                    j->n_dropped_unlogged, j->n_dropped, j->drop_reason);
        j->n_dropped_unlogged = 0;
}

static void dropped(AuditJournal *j, const char *reason) {
        j->n_dropped++;
        j->n_dropped_unlogged++;
        j->drop_reason = reason;
        if (ratelimit_below(&j->drop_log))
                log_dropped(j);
}

AuditJournal *audit_journal_free(AuditJournal *j) {
        if (!j)
                return NULL;
        if (j->n_dropped_unlogged > 0)
                log_dropped(j);
        if (j->running) {
                pthread_mutex_lock(&j->lock);
                j->stop = true;
                pthread_cond_signal(&j->cond);
                pthread_mutex_unlock(&j->lock);
                (void) pthread_join(j->thread, NULL);
        }
        while (j->head) {
                JournalMessage *m = j->head;
                j->head = m->next;
                message_free(m);
        }
        pthread_cond_destroy(&j->cond);
        pthread_mutex_destroy(&j->lock);
        return mfree(j);
}

void audit_journal_submit(AuditJournal *j, const AuditRecord *r) {
        JournalMessage *m;

        assert(j);
        assert(r);

        m = new0(JournalMessage, 1);
        if (!m || audit_journal_format(r, &m->fields, &m->n_fields) < 0) {
                free(m);
                dropped(j, "out of memory");
                return;
        }

        pthread_mutex_lock(&j->lock);
        if (j->n_queued >= j->max_queued) {
                /* Overflow policy: drop, like auditd's overflow_action=syslog; the loop must not
                 * wait for journald, nor hold what a flood queues without bound. */
                pthread_mutex_unlock(&j->lock);
                message_free(m);
                dropped(j, "journald is behind (MaxJournalBacklog= records wait for it)");
                return;
        }
        *j->tail = m;
        j->tail = &m->next;
        j->n_queued++;
        pthread_cond_signal(&j->cond);
        pthread_mutex_unlock(&j->lock);
}


uint64_t audit_journal_get_dropped(const AuditJournal *j) {
        assert(j);
        return j->n_dropped;
}
