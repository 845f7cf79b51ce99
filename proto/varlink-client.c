/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Varlink client: blocking and loop-integrated calls. Runs in: clients. */

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "json-util.h"
#include "varlink-client.h"
#include "varlink-errors.h"

#define DEFAULT_TIMEOUT_USEC (45ULL * 1000000ULL)
/* Reads per varlink_client_process() (of up to 16 KiB each): a peer that never stops sending
 * must not keep the caller's loop inside it. */
#define PROCESS_READS_MAX 4U
/* Between connect() attempts while the listen backlog is full. */
#define CONNECT_BACKOFF_MAX_USEC (50ULL * 1000ULL)

typedef struct Pending {
        VarlinkReplyFunc callback; /* NULL: a blocking call collects the reply */
        void *userdata;
        unsigned flags;
        uint64_t id;
        bool abandoned; /* a blocking call that timed out (VARLINK_CLIENT_ABANDON_TIMED_OUT) */
        /* A blocking call's: gets its late reply should it be abandoned. */
        VarlinkReplyFunc abandoned_callback;
        void *abandoned_userdata;
        uint64_t start, end; /* its message's stream positions (VarlinkOutputRange) */
} Pending;

struct VarlinkClient {
        VarlinkStream *stream;
        VarlinkLimits limits;
        uint64_t timeout_usec;
        unsigned client_flags;
        size_t n_abandoned;
        VarlinkReplyFunc next_abandoned_callback; /* for the next blocking call */
        void *next_abandoned_userdata;
        bool dead;
        int dead_error;

        int *out_fds;
        size_t n_out_fds, allocated_out_fds;

        Pending *pending; /* ring of calls awaiting replies, oldest first */
        size_t n_pending, allocated_pending, pending_head;
        uint64_t next_id;
        /* The last n_held of them are held back, their messages queued but not written (see
         * varlink_client_set_max_in_flight()); the others are in flight. */
        size_t n_held;
        unsigned max_in_flight;

        /* The reply being delivered, or the last reply of a blocking call. */
        json_object *current;
        int *current_fds;
        size_t n_current_fds;

        /* What a blocking call waits for. */
        uint64_t wait_id;
        bool wait_done;
        bool wait_more;
        VarlinkReplyFunc wait_callback;
        void *wait_userdata;
        json_object *wait_parameters;
        const char *wait_error;
};

static void current_clear(VarlinkClient *c) {
        varlink_client_close_reply_fds(c);
        c->current = (json_object_put(c->current), NULL);
}

int varlink_client_new_from_fd(int fd, VarlinkClient **ret) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        int r;

        assert_return(ret, -EINVAL);
        if (fd < 0)
                return -EBADF;

        c = new0(VarlinkClient, 1);
        if (!c) {
                safe_close(fd);
                return -ENOMEM;
        }
        c->limits = VARLINK_LIMITS_DEFAULT;
        /* Replies are lists (a QueryAudit page holds 10000 records): their size, bounded by
         * the server's MaxMessageSize=, is what bounds them, not a count of values. */
        c->limits.max_json_values = 0;
        c->timeout_usec = DEFAULT_TIMEOUT_USEC;

        r = varlink_stream_new(fd, &c->limits, &c->stream);
        if (r < 0)
                return r;
        varlink_stream_set_allow_fds(c->stream, true, true);

        *ret = TAKE_PTR(c);
        return 0;
}

int varlink_client_connect_full(const char *address, uint64_t timeout_usec, VarlinkClient **ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -EBADF;
        uint64_t deadline, backoff_usec = 1000;
        const char *path;
        socklen_t sl;
        size_t len;

        assert_return(address, -EINVAL);
        assert_return(ret, -EINVAL);

        path = strneq(address, "unix:", 5) ? address + 5 : address;
        /* Parameters after ';' are reserved for future use by the spec: ignore them. */
        len = strcspn(path, ";");
        if (len == 0 || len >= sizeof(sa.sun_path))
                return -EINVAL;
        if (path[0] != '/' && path[0] != '@' && !strneq(path, "./", 2))
                return -EINVAL;

        memcpy(sa.sun_path, path, len);
        sl = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + len);
        if (path[0] == '@')
                sa.sun_path[0] = 0; /* abstract namespace */
        else
                sl++; /* include the NUL */

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();

        /* SOCK_NONBLOCK, so that a full listen backlog does not block us forever. On AF_UNIX
         * that connect() fails with EAGAIN and nothing is queued (unlike TCP's EINPROGRESS):
         * polling the socket would report it writable but unconnected. Retry instead, until
         * the deadline, as a blocking connect would wait. */
        deadline = usec_add(now_monotonic_usec(), timeout_usec);
        for (;;) {
                uint64_t n;

                if (connect(fd, (struct sockaddr *) &sa, sl) >= 0)
                        break;
                if (errno != EAGAIN)
                        return negative_errno();
                n = now_monotonic_usec();
                if (n >= deadline)
                        return -ETIMEDOUT;
                (void) nanosleep(&(struct timespec){ .tv_nsec = (long) MIN(backoff_usec, deadline - n) * 1000L },
                                 NULL);
                backoff_usec = MIN(backoff_usec * 2, CONNECT_BACKOFF_MAX_USEC);
        }

        return varlink_client_new_from_fd(TAKE_FD(fd), ret);
}

int varlink_client_connect(const char *address, VarlinkClient **ret) {
        return varlink_client_connect_full(address, DEFAULT_TIMEOUT_USEC, ret);
}

VarlinkClient *varlink_client_free(VarlinkClient *c) {
        if (!c)
                return NULL;
        current_clear(c);
        varlink_client_drop_fds(c);
        free(c->pending);
        varlink_stream_free(c->stream);
        return mfree(c);
}

int varlink_client_set_limits(VarlinkClient *c, const VarlinkLimits *limits) {
        int r;

        assert_return(c, -EINVAL);
        assert_return(limits, -EINVAL);
        if (!c->stream)
                return -ENOTCONN;

        r = varlink_stream_set_limits(c->stream, limits);
        if (r < 0)
                return r;
        c->limits = *limits;
        return 0;
}

void varlink_client_set_timeout(VarlinkClient *c, uint64_t usec) {
        c->timeout_usec = usec;
}

void varlink_client_set_flags(VarlinkClient *c, unsigned flags) {
        c->client_flags = flags;
}

int varlink_client_get_fd(const VarlinkClient *c) {
        return c->stream ? varlink_stream_get_fd(c->stream) : -ENOTCONN;
}

short varlink_client_get_events(const VarlinkClient *c) {
        short events = 0;

        if (c->dead)
                return 0;
        if (c->n_pending > 0)
                events |= POLLIN;
        if (varlink_stream_get_writable_size(c->stream) > 0)
                events |= POLLOUT;
        return events;
}

size_t varlink_client_get_n_pending(const VarlinkClient *c) {
        return c->n_pending;
}

bool varlink_client_is_connected(const VarlinkClient *c) {
        return !c->dead;
}

int varlink_client_detach_fd(VarlinkClient *c, int *ret_fd) {
        int fd;

        assert_return(c, -EINVAL);
        assert_return(ret_fd, -EINVAL);
        if (c->dead || !c->stream)
                return -ENOTCONN;
        if (c->n_pending > 0 || c->n_out_fds > 0)
                return -EBUSY;
        fd = varlink_stream_detach_fd(c->stream);
        if (fd < 0)
                return fd;
        /* Dead, as after a hang-up: nothing more is sent or read on what is no longer ours. */
        c->dead = true;
        c->dead_error = -ENOTCONN;
        c->stream = varlink_stream_free(c->stream);
        *ret_fd = fd;
        return 0;
}

int varlink_client_move_fd(VarlinkClient *c, int fd) {
        assert_return(c, -EINVAL);
        if (!c->stream)
                return -ENOTCONN;
        return varlink_stream_move_fd(c->stream, fd);
}

int varlink_client_push_fd(VarlinkClient *c, int fd) {
        if (!c || fd < 0) {
                safe_close(fd);
                return -EINVAL;
        }
        if (c->n_out_fds >= c->limits.max_fds_per_message) {
                safe_close(fd);
                return -ENOBUFS;
        }
        if (!GREEDY_REALLOC(c->out_fds, c->allocated_out_fds, c->n_out_fds + 1)) {
                safe_close(fd);
                return -ENOMEM;
        }
        c->out_fds[c->n_out_fds] = fd;
        return (int) c->n_out_fds++;
}

int varlink_client_take_fd(VarlinkClient *c, size_t index) {
        int fd;

        assert_return(c, -EINVAL);
        /* The fds from the -EMFILE entry on were sent, but our fd table had no room. */
        if (c->n_current_fds > 0 && c->current_fds[c->n_current_fds - 1] == -EMFILE &&
            index >= c->n_current_fds - 1)
                return -EMFILE;
        if (index >= c->n_current_fds || c->current_fds[index] < 0)
                return -ENXIO;
        fd = c->current_fds[index];
        c->current_fds[index] = -EBADF;
        return fd;
}

void varlink_client_close_reply_fds(VarlinkClient *c) {
        close_many(c->current_fds, c->n_current_fds);
        c->current_fds = mfree(c->current_fds);
        c->n_current_fds = 0;
}

static Pending *pending_at(VarlinkClient *c, size_t i) {
        return &c->pending[(c->pending_head + i) % c->allocated_pending];
}

static int pending_push(VarlinkClient *c, const Pending *p) {
        if (c->n_pending == c->allocated_pending) {
                size_t n = MAX(c->allocated_pending * 2, (size_t) 8);
                Pending *q = new(Pending, n);

                if (!q)
                        return -ENOMEM;
                for (size_t i = 0; i < c->n_pending; i++)
                        q[i] = *pending_at(c, i);
                free(c->pending);
                c->pending = q;
                c->allocated_pending = n;
                c->pending_head = 0;
        }
        *pending_at(c, c->n_pending++) = *p;
        return 0;
}

/* The stream holds back what is queued from the first held call's message on. */
static void client_update_hold(VarlinkClient *c) {
        if (c->stream)
                varlink_stream_hold_output(c->stream, c->n_held > 0 ? pending_at(c, c->n_pending - c->n_held)->start :
                                                                      UINT64_MAX);
}

/* Held calls go, oldest first, while the bound leaves room, and are on their way at once if the
 * socket takes them (a write error shows in varlink_client_process()). */
static void client_release(VarlinkClient *c) {
        bool released = false;

        while (c->n_held > 0 && (c->max_in_flight == 0 || c->n_pending - c->n_held < c->max_in_flight)) {
                c->n_held--;
                released = true;
        }
        if (!released || c->dead)
                return;
        client_update_hold(c);
        (void) varlink_stream_write(c->stream);
}

static void pending_pop(VarlinkClient *c) {
        if (pending_at(c, 0)->abandoned)
                c->n_abandoned--;
        c->pending_head = (c->pending_head + 1) % c->allocated_pending;
        c->n_pending--;
        client_release(c);
}

static int deliver(VarlinkClient *c, const Pending *p, json_object *parameters, const char *error,
                   bool continues) {
        if (p->abandoned) {
                int r = 0;

                /* Nobody waits for it any more: nothing of it stays, but for what its caller
                 * must undo (a context its reply made). */
                if (p->abandoned_callback && !continues)
                        r = p->abandoned_callback(c, parameters, error, false, p->abandoned_userdata);
                varlink_client_close_reply_fds(c);
                return r;
        }
        if (p->id == c->wait_id && !p->callback) {
                if (c->wait_callback) {
                        int r = c->wait_callback(c, parameters, error, continues, c->wait_userdata);
                        if (!continues)
                                c->wait_done = true;
                        return r;
                }
                c->wait_parameters = parameters;
                c->wait_error = error;
                c->wait_done = true;
                return 0;
        }
        return p->callback ? p->callback(c, parameters, error, continues, p->userdata) : 0;
}

/* The connection is unusable: it is closed, and every waiting caller learns it exactly once. */
static int client_die(VarlinkClient *c, int error) {
        const char *name = error == -ETIMEDOUT ? VARLINK_ERROR_TIMEOUT :
                           error == -EPROTO    ? VARLINK_ERROR_PROTOCOL :
                                                 VARLINK_ERROR_DISCONNECTED;

        /* Held calls are failed with the others: nothing will be written any more. */
        c->n_held = 0;
        if (!c->dead) {
                c->dead = true;
                c->dead_error = error;
                /* Closed now, not by varlink_client_free(): the server releases what the
                 * connection held only once it sees the hang-up, and after a timeout a late
                 * reply must never be read as the answer to a later call. */
                if (c->client_flags & VARLINK_CLIENT_KEEP_FD)
                        /* Shut down in place, not replaced by another socket under the number:
                         * a file that replaces it leaves every epoll set it was in (the caller's
                         * EPOLL_CTL_MOD and _DEL then fail with ENOENT). */
                        varlink_stream_shutdown(c->stream);
                else
                        c->stream = varlink_stream_free(c->stream);
        }
        while (c->n_pending > 0) {
                Pending p = *pending_at(c, 0);

                pending_pop(c);
                current_clear(c);
                (void) deliver(c, &p, NULL, name, false);
        }
        return c->dead_error;
}

static int client_dispatch_one(VarlinkClient *c) {
        _cleanup_(json_object_putp) json_object *msg = NULL;
        _cleanup_free_ int *fds = NULL;
        VarlinkReplyMessage reply;
        size_t n_fds = 0;
        Pending p;
        int r;

        r = varlink_stream_next(c->stream, &msg, &fds, &n_fds);
        if (r == -E2BIG)
                return -EPROTO; /* more values than the limits allow: the peer's violation, as a size is */
        if (r <= 0)
                return r;

        r = varlink_message_parse_reply(msg, &reply);
        if (r < 0 || c->n_pending == c->n_held ||
            (reply.continues && !(pending_at(c, 0)->flags & VARLINK_CALL_MORE))) {
                close_many(fds, n_fds);
                return -EPROTO;
        }

        p = *pending_at(c, 0);
        if (!reply.continues)
                pending_pop(c);

        current_clear(c);
        c->current = TAKE_PTR(msg);
        c->current_fds = TAKE_PTR(fds);
        c->n_current_fds = n_fds;

        r = deliver(c, &p, reply.parameters, reply.error, reply.continues);
        return r < 0 ? r : 1;
}

int varlink_client_process(VarlinkClient *c) {
        bool progress = false, drained = false, write_failed;
        unsigned n_reads = 0;
        int r;

        assert_return(c, -EINVAL);
        if (c->dead)
                return c->dead_error;

        /* A server that hung up may have said why first (a connection it refuses gets the
         * refusal's name as the answer to its first call): as sd-varlink does, a write that
         * finds the peer gone ends nothing; the read that finds the end of the stream does. */
        r = varlink_stream_write(c->stream);
        if (r < 0 && r != -EPIPE && r != -ECONNRESET)
                return client_die(c, r);
        write_failed = r < 0;
        progress = r > 0;

        for (;;) {
                r = client_dispatch_one(c);
                if (r < 0)
                        /* -EMSGSIZE too: a reply beyond the limits is the peer's violation,
                         * and libtsm's callers must not take it for io.tsmd.ReplyTooLarge. */
                        return client_die(c, r == -EBADMSG || r == -ELOOP || r == -EMSGSIZE ? -EPROTO : r);
                if (r > 0) {
                        progress = true;
                        if (c->wait_done)
                                break;
                        continue;
                }
                /* With no call pending too: a read is how a hang-up of the server is seen
                 * (poll() reports it whatever events were asked for), and a loop that is not
                 * told spins on it, its owner unaware until its next call. Anything else that
                 * comes unasked is a protocol violation (client_dispatch_one()). */
                if (drained)
                        break;
                /* Every complete message is dispatched: what is left is in the socket, which
                 * stays readable for it. */
                if (n_reads++ >= PROCESS_READS_MAX)
                        return 2;

                r = varlink_stream_read(c->stream);
                if (r < 0)
                        return client_die(c, r == -EMSGSIZE ? -EPROTO : r);
                /* Nothing to read, and the peer takes no more (it shut down its reading side
                 * only): nothing sent will be answered. */
                if (r == 0 && write_failed)
                        return client_die(c, -ECONNRESET);
                if (r == 0)
                        break;
                drained = r == 2;
                progress = true;
        }
        return progress;
}

void varlink_client_drop_fds(VarlinkClient *c) {
        close_many(c->out_fds, c->n_out_fds);
        c->out_fds = mfree(c->out_fds);
        c->n_out_fds = c->allocated_out_fds = 0;
}

/* Where the next message queued starts. */
static uint64_t client_output_end(VarlinkClient *c) {
        return varlink_stream_get_output_offset(c->stream) + varlink_stream_get_output_size(c->stream);
}

static int client_send(VarlinkClient *c, const char *method, json_object *parameters,
                       unsigned flags, const Pending *p) {
        _cleanup_(json_object_putp) json_object *m = NULL;
        bool hold = false;
        int r;

        /* A call that fails takes the fds pushed for it along (varlink_stream_enqueue() does
         * from its start on): left queued, they would go with the next call, which names
         * other ones. */
        if (c->dead) {
                json_object_put(parameters);
                varlink_client_drop_fds(c);
                return c->dead_error;
        }

        r = varlink_message_new_call(method, parameters, flags, &m);
        if (r < 0) {
                varlink_client_drop_fds(c);
                return r;
        }

        if (p) {
                Pending q = *p;

                /* Behind held calls, or past the bound: held too (calls go in call order). */
                hold = c->n_held > 0 || (c->max_in_flight > 0 && c->n_pending >= c->max_in_flight);
                q.start = client_output_end(c);
                r = pending_push(c, &q);
                if (r < 0) {
                        varlink_client_drop_fds(c);
                        return r;
                }
        }

        r = varlink_stream_enqueue(c->stream, m, TAKE_PTR(c->out_fds), c->n_out_fds);
        c->n_out_fds = c->allocated_out_fds = 0;
        if (r < 0) {
                if (p)
                        c->n_pending--; /* it was the newest entry */
                return r;
        }
        if (p) {
                pending_at(c, c->n_pending - 1)->end = client_output_end(c);
                if (hold && ++c->n_held == 1)
                        client_update_hold(c);
        }
        return 0;
}

/* The blocking call being waited for timed out. */
static int client_timeout(VarlinkClient *c) {
        if (!(c->client_flags & VARLINK_CLIENT_ABANDON_TIMED_OUT))
                return client_die(c, -ETIMEDOUT);
        /* At most VARLINK_CLIENT_ABANDONED_MAX: no blocking call is made with that many
         * (client_abandoned_full()). */
        for (size_t i = 0; i < c->n_pending; i++) {
                Pending *p = pending_at(c, i);

                if (p->id == c->wait_id && !p->callback) {
                        p->abandoned = true;
                        c->n_abandoned++;
                        break;
                }
        }
        return -ETIMEDOUT;
}

static int client_wait(VarlinkClient *c) {
        uint64_t deadline = c->timeout_usec > 0 ? usec_add(now_monotonic_usec(), c->timeout_usec) : 0;
        int r;

        while (!c->wait_done) {
                struct pollfd pfd = { .fd = varlink_client_get_fd(c) };
                int timeout_ms = -1;

                r = varlink_client_process(c);
                if (r < 0)
                        return r;
                if (c->wait_done)
                        break;
                if (r > 0)
                        continue;

                if (deadline > 0) {
                        uint64_t n = now_monotonic_usec();
                        if (n >= deadline)
                                return client_timeout(c);
                        timeout_ms = usec_to_poll_timeout(deadline - n);
                }
                pfd.events = varlink_client_get_events(c);
                r = poll(&pfd, 1, timeout_ms);
                if (r < 0 && errno != EINTR)
                        return client_die(c, negative_errno());
        }
        return 0;
}

/* Whether a blocking call must be refused: VARLINK_CLIENT_ABANDONED_MAX abandoned calls are
 * unanswered after reading what came meanwhile. Each is a reply the peer still owes, a slot of
 * the pending queue that only its reply frees: the bound keeps a caller whose calls keep
 * timing out from growing that queue without end. Hanging up instead would end what the
 * connection holds, for a peer that may only be slow (replies come in call order: one call
 * the peer holds for long holds up every later one). */
static int client_abandoned_full(VarlinkClient *c) {
        int r;

        if (!(c->client_flags & VARLINK_CLIENT_ABANDON_TIMED_OUT) || c->n_abandoned < VARLINK_CLIENT_ABANDONED_MAX ||
            c->dead)
                return 0;
        /* A caller that only makes blocking calls reads replies only here. */
        r = varlink_client_process(c);
        if (r < 0)
                return r;
        return c->n_abandoned >= VARLINK_CLIENT_ABANDONED_MAX ? -EINPROGRESS : 0;
}

static int client_call_blocking(VarlinkClient *c, const char *method, json_object *parameters,
                                unsigned flags, VarlinkReplyFunc callback, void *userdata) {
        Pending p = {
                .flags = flags,
                .id = ++c->next_id,
                .abandoned_callback = TAKE_PTR(c->next_abandoned_callback),
                .abandoned_userdata = TAKE_PTR(c->next_abandoned_userdata),
        };
        int r;

        current_clear(c);
        r = client_abandoned_full(c);
        if (r < 0) {
                json_object_put(parameters);
                varlink_client_drop_fds(c);
                return r;
        }
        r = client_send(c, method, parameters, flags, &p);
        if (r < 0)
                return r;

        c->wait_id = p.id;
        c->wait_done = false;
        c->wait_callback = callback;
        c->wait_userdata = userdata;
        c->wait_parameters = NULL;
        c->wait_error = NULL;

        r = client_wait(c);
        c->wait_id = 0;
        c->wait_callback = NULL;
        /* Or varlink_client_process() would stop after every reply from now on. */
        c->wait_done = false;
        return r;
}

int varlink_client_call(VarlinkClient *c, const char *method, json_object *parameters,
                        json_object **ret_parameters, const char **ret_error) {
        int r;

        assert_return(c, -EINVAL);
        assert_return(method, -EINVAL);

        r = client_call_blocking(c, method, parameters, 0, NULL, NULL);
        if (r < 0)
                return r;
        if (c->wait_error && !ret_error)
                return -varlink_error_to_errno(c->wait_error);
        if (ret_parameters)
                *ret_parameters = c->wait_parameters;
        if (ret_error)
                *ret_error = c->wait_error;
        return 0;
}

int varlink_client_call_more(VarlinkClient *c, const char *method, json_object *parameters,
                             VarlinkReplyFunc callback, void *userdata) {
        assert_return(c, -EINVAL);
        assert_return(method, -EINVAL);
        assert_return(callback, -EINVAL);

        return client_call_blocking(c, method, parameters, VARLINK_CALL_MORE, callback, userdata);
}

void varlink_client_on_abandoned_reply(VarlinkClient *c, VarlinkReplyFunc callback, void *userdata) {
        c->next_abandoned_callback = callback;
        c->next_abandoned_userdata = userdata;
}

int varlink_client_queue_oneway(VarlinkClient *c, const char *method, json_object *parameters) {
        int r;

        assert_return(c, -EINVAL);
        assert_return(method, -EINVAL);

        r = client_send(c, method, parameters, VARLINK_CALL_ONEWAY, NULL);
        if (r < 0)
                return r;
        /* As varlink_client_call_async(): a write error shows in varlink_client_process(). */
        (void) varlink_stream_write(c->stream);
        return 0;
}

int varlink_client_send_oneway(VarlinkClient *c, const char *method, json_object *parameters) {
        uint64_t deadline, end;
        int r;

        assert_return(c, -EINVAL);
        if (c->dead) {
                json_object_put(parameters);
                return c->dead_error;
        }
        r = varlink_client_queue_oneway(c, method, parameters);
        if (r < 0)
                return r;
        end = client_output_end(c);

        deadline = usec_add(now_monotonic_usec(), c->timeout_usec ?: DEFAULT_TIMEOUT_USEC);
        /* Behind held calls it goes in its turn, as varlink_client_queue_oneway()'s. */
        while (varlink_stream_get_output_offset(c->stream) < end && varlink_stream_get_writable_size(c->stream) > 0) {
                struct pollfd pfd = { .fd = varlink_client_get_fd(c), .events = POLLOUT };
                uint64_t n;

                r = varlink_stream_write(c->stream);
                if (r < 0)
                        return client_die(c, r == -EPIPE ? -ECONNRESET : r);
                if (r > 0)
                        continue;
                n = now_monotonic_usec();
                if (n >= deadline)
                        return -ETIMEDOUT;
                (void) poll(&pfd, 1, usec_to_poll_timeout(deadline - n));
        }
        return 0;
}

int varlink_client_call_async(VarlinkClient *c, const char *method, json_object *parameters,
                              unsigned flags, VarlinkReplyFunc callback, void *userdata) {
        Pending p = { .callback = callback, .userdata = userdata, .flags = flags & VARLINK_CALL_MORE };
        int r;

        assert_return(c, -EINVAL);
        assert_return(method, -EINVAL);
        assert_return(callback, -EINVAL);

        p.id = ++c->next_id;
        r = client_send(c, method, parameters, p.flags, &p);
        if (r < 0)
                return r;
        /* On its way at once if the socket takes it: the caller's next poll waits for the
         * reply, not for POLLOUT. A write error shows in varlink_client_process(). */
        (void) varlink_stream_write(c->stream);
        return 0;
}

void varlink_client_set_max_in_flight(VarlinkClient *c, unsigned n) {
        c->max_in_flight = n;
        if (!c->dead)
                client_release(c);
}

size_t varlink_client_get_n_held(const VarlinkClient *c) {
        return c->n_held;
}

int varlink_client_cancel_held(VarlinkClient *c, VarlinkCallMatchFunc match, void *arg, void ***ret_userdata,
                               size_t *ret_n) {
        _cleanup_free_ VarlinkOutputRange *ranges = NULL;
        _cleanup_free_ void **userdata = NULL;
        size_t first, n = 0, kept, k = 0;
        uint64_t dropped = 0;
        int r;

        assert_return(c, -EINVAL);
        assert_return(match, -EINVAL);
        assert_return(ret_userdata, -EINVAL);
        assert_return(ret_n, -EINVAL);

        *ret_userdata = NULL;
        *ret_n = 0;
        if (c->dead || c->n_held == 0)
                return 0;

        ranges = new(VarlinkOutputRange, c->n_held);
        userdata = new(void *, c->n_held);
        if (!ranges || !userdata)
                return -ENOMEM;
        first = c->n_pending - c->n_held;
        for (size_t i = first; i < c->n_pending; i++) {
                Pending *p = pending_at(c, i);

                /* Asynchronous calls only: a blocking call's caller waits for its reply. */
                if (!p->callback || !match(p->userdata, arg))
                        continue;
                ranges[n] = (VarlinkOutputRange) { .start = p->start, .end = p->end };
                userdata[n++] = p->userdata;
        }
        if (n == 0)
                return 0;

        r = varlink_stream_drop_output(c->stream, ranges, n);
        if (r < 0)
                return r;

        /* The calls that stay move down the ring over those dropped, and their messages down the
         * stream by the bytes dropped before them. */
        kept = first;
        for (size_t i = first; i < c->n_pending; i++) {
                Pending q = *pending_at(c, i);

                if (k < n && q.start == ranges[k].start) {
                        dropped += ranges[k].end - ranges[k].start;
                        k++;
                        continue;
                }
                q.start -= dropped;
                q.end -= dropped;
                *pending_at(c, kept++) = q;
        }
        c->n_pending -= n;
        c->n_held -= n;
        client_update_hold(c);

        *ret_userdata = TAKE_PTR(userdata);
        *ret_n = n;
        return (int) MIN(n, (size_t) INT_MAX);
}
