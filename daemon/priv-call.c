/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The worker's side of the monitor's operations: a call per operation, over the channel
 * (priv-channel.c). Runs in: worker. */

#include "idle-flush.h"
#include "priv-channel-internal.h"
#include "tsm-priv-batch.h"

int priv_send_late_ack(PrivChannel *c, uint64_t id, uint64_t seq, bool durable) {
        struct tsm_priv_late_ack m;
        int r;

        if (c->gone)
                return -ECONNRESET;
        tsm_priv_init(&m, TSM_PRIV_LATE_ACK, 0, 0);
        m.id = id;
        m.seq = seq;
        m.durable = durable;
        if (!durable)
                /* Before the record goes to the disk (the audit log hands it to its thread at the
                 * end of the loop's round): should this worker end with it on the disk, the next
                 * one must know. */
                return priv_channel_send_now(c, &m);
        r = tsm_priv_outbox_add(c->outbox, c->fd, &m, NULL, 0, NULL);
        if (r >= 0)
                idle_flush_schedule(c->flush);
        return r;
}

int priv_request_cancel_sent(PrivRequest *r) {
        PrivChannel *c = r->channel;
        struct tsm_priv_cancel_request m;
        int k;

        assert(!r->queued);
        if (c->gone)
                return -ECONNRESET;
        tsm_priv_init(&m, TSM_PRIV_CANCEL_REQUEST, 0, 0);
        m.slot = r->slot;
        m.request_cookie = r->cookie;
        /* After r's message, in the outbox or sent: the monitor has r when it reads this. */
        k = tsm_priv_outbox_add(c->outbox, c->fd, &m, NULL, 0, NULL);
        if (k >= 0)
                idle_flush_schedule(c->flush);
        return k;
}

int priv_send_ready(PrivChannel *c) {
        struct tsm_priv_ready m;

        tsm_priv_init(&m, TSM_PRIV_READY, 0, 0);
        return priv_channel_send_now(c, &m);
}

int priv_send_status(PrivChannel *c, unsigned n_clients, unsigned n_pending, bool draining, uint32_t audit) {
        struct tsm_priv_status m;

        tsm_priv_init(&m, TSM_PRIV_STATUS, 0, 0);
        m.n_clients = n_clients;
        m.n_pending = n_pending;
        m.draining = draining;
        m.audit = audit;
        return priv_channel_send_now(c, &m);
}

static int call(PrivChannel *c, void *msg, int fd, struct tsm_priv_reply *ret, int *ret_fd) {
        return priv_channel_call(c, msg, fd, ret, ret_fd, NULL);
}

static int copy_string(char *field, size_t size, const char *s) {
        if (!s || strlen(s) >= size)
                return -EINVAL;
        memset(field, 0, size);
        memcpy(field, s, strlen(s));
        return 0;
}

int priv_send_restored_previous(PrivChannel *c, uint32_t context, const char *previous_reclaim_id) {
        struct tsm_priv_restored_previous m;
        int r;

        tsm_priv_init(&m, TSM_PRIV_RESTORED_PREVIOUS, 0, 0);
        m.context = context;
        r = copy_string(m.previous_reclaim_id, sizeof(m.previous_reclaim_id), previous_reclaim_id);
        if (r < 0)
                return r;
        /* Before READY, which goes at once too. */
        return priv_channel_send_now(c, &m);
}

static int new_context(PrivChannel *c, uint32_t type, uint32_t slot, uid_t uid, const char *reclaim_id, int fd,
                       uint32_t *ret_context, int *ret_fd) {
        struct tsm_priv_new_context m;
        struct tsm_priv_reply reply;
        int r;

        tsm_priv_init(&m, type, 0, 0);
        m.slot = slot;
        m.uid = (uint32_t) uid;
        r = copy_string(m.reclaim_id, sizeof(m.reclaim_id), reclaim_id);
        if (r < 0)
                return r;
        r = call(c, &m, fd, &reply, ret_fd);
        if (r < 0)
                return r;
        *ret_context = reply.value;
        return 0;
}

int priv_call_open_context(PrivChannel *c, uint32_t slot, uid_t uid, const char *reclaim_id, uint32_t *ret_context,
                           int *ret_fd) {
        return new_context(c, TSM_PRIV_OPEN_CONTEXT, slot, uid, reclaim_id, -EBADF, ret_context, ret_fd);
}

int priv_call_adopt_context(PrivChannel *c, uint32_t slot, uid_t uid, const char *reclaim_id, int fd,
                            uint32_t *ret_context) {
        return new_context(c, TSM_PRIV_ADOPT_CONTEXT, slot, uid, reclaim_id, fd, ret_context, NULL);
}

static int context_op(PrivChannel *c, uint32_t type, uint32_t slot, uint32_t context, int *ret_fd) {
        struct tsm_priv_context m;
        struct tsm_priv_reply reply;

        tsm_priv_init(&m, type, 0, 0);
        m.slot = slot;
        m.context = context;
        return call(c, &m, -EBADF, &reply, ret_fd);
}

int priv_call_reclaim_context(PrivChannel *c, uint32_t slot, uint32_t context, const char *reclaim_id,
                              const char *presented_id, int *ret_fd) {
        struct tsm_priv_reclaim_context m;
        struct tsm_priv_reply reply;
        int r;

        tsm_priv_init(&m, TSM_PRIV_RECLAIM_CONTEXT, 0, 0);
        m.slot = slot;
        m.context = context;
        r = copy_string(m.reclaim_id, sizeof(m.reclaim_id), reclaim_id);
        if (r >= 0)
                r = copy_string(m.previous_reclaim_id, sizeof(m.previous_reclaim_id), presented_id);
        if (r < 0)
                return r;
        return call(c, &m, -EBADF, &reply, ret_fd);
}

int priv_call_close_context(PrivChannel *c, uint32_t slot, uint32_t context) {
        priv_channel_fail_waiting(c, slot, context, 0);
        return context_op(c, TSM_PRIV_CLOSE_CONTEXT, slot, context, NULL);
}

int priv_call_attach_vdevice(PrivChannel *c, uint32_t slot, uint32_t context, uint32_t vdevice,
                             const char *pci_address, bool bound) {
        struct tsm_priv_attach_vdevice m;
        struct tsm_priv_reply reply;
        int r;

        tsm_priv_init(&m, TSM_PRIV_ATTACH_VDEVICE, 0, 0);
        m.slot = slot;
        m.context = context;
        m.vdevice = vdevice;
        m.state = bound ? TSM_PRIV_VDEVICE_BOUND : 0;
        r = copy_string(m.pci_address, sizeof(m.pci_address), pci_address);
        if (r < 0)
                return -ENODEV; /* no device has such an address */
        return call(c, &m, -EBADF, &reply, NULL);
}

static int vdevice_op(PrivChannel *c, uint32_t type, uint32_t slot, uint32_t context, uint32_t vdevice,
                      uint32_t *ret_value) {
        struct tsm_priv_vdevice m;
        struct tsm_priv_reply reply;
        int r;

        tsm_priv_init(&m, type, 0, 0);
        m.slot = slot;
        m.context = context;
        m.vdevice = vdevice;
        r = call(c, &m, -EBADF, &reply, NULL);
        if (r < 0)
                return r;
        if (ret_value)
                *ret_value = reply.value;
        return 0;
}

int priv_call_detach_vdevice(PrivChannel *c, uint32_t slot, uint32_t context, uint32_t vdevice) {
        priv_channel_fail_waiting(c, slot, context, vdevice);
        return vdevice_op(c, TSM_PRIV_DETACH_VDEVICE, slot, context, vdevice, NULL);
}

int priv_call_get_vdevice_state(PrivChannel *c, uint32_t slot, uint32_t context, uint32_t vdevice, int *ret_state) {
        uint32_t v;
        int r;

        r = vdevice_op(c, TSM_PRIV_GET_VDEVICE_STATE, slot, context, vdevice, &v);
        if (r < 0)
                return r;
        *ret_state = (int) v;
        return 0;
}

static int device_op(PrivChannel *c, uint32_t type, const char *pci_address, const char *tsm, uint32_t *ret_value) {
        struct tsm_priv_device m;
        struct tsm_priv_reply reply;
        int r;

        tsm_priv_init(&m, type, 0, 0);
        if (copy_string(m.pci_address, sizeof(m.pci_address), pci_address) < 0)
                return -ENODEV;
        if (tsm && copy_string(m.tsm, sizeof(m.tsm), tsm) < 0)
                return -ENXIO;
        r = call(c, &m, -EBADF, &reply, NULL);
        if (r < 0)
                return r;
        if (ret_value)
                *ret_value = reply.value;
        return 0;
}

int priv_call_get_device_state(PrivChannel *c, const char *pci_address, int *ret_state) {
        uint32_t v;
        int r;

        r = device_op(c, TSM_PRIV_GET_DEVICE_STATE, pci_address, NULL, &v);
        if (r < 0)
                return r;
        *ret_state = (int) v;
        return 0;
}

int priv_call_reload(PrivChannel *c, int *ret_fd, char **ret_reason, bool *ret_policy_failed) {
        struct tsm_priv_reload m;
        struct tsm_priv_reply reply = {}; /* as it is if none came */
        const void *payload = NULL;
        int fd = -EBADF, r;

        assert(ret_fd);
        assert(ret_reason);
        assert(ret_policy_failed);

        *ret_reason = NULL;
        *ret_policy_failed = false;
        tsm_priv_init(&m, TSM_PRIV_RELOAD, 0, 0);
        r = priv_channel_call(c, &m, -EBADF, &reply, &fd, &payload);
        if (r >= 0 && (reply.hdr.payload_len > 0 || reply.value != 0)) {
                safe_close(fd);
                priv_channel_gone(c, "a refusal's reason or value on a load it did");
                return -ECONNRESET;
        }
        if (r >= 0) {
                *ret_fd = fd;
                return r;
        }
        if (priv_channel_is_gone(c))
                return r;
        /* SECURITY: text for the admin and the journal, checked like any field of the monitor's:
         * one that breaks the rules is a monitor that does, not one to show. */
        if (reply.value > 1 || (reply.hdr.payload_len > 0 && !tsm_priv_check_reason(payload, reply.hdr.payload_len))) {
                priv_channel_gone(c, "malformed reason for a refused load");
                return -ECONNRESET;
        }
        *ret_reason = reply.hdr.payload_len > 0 ? strdup(payload) : NULL;
        *ret_policy_failed = reply.value;
        return r;
}

int priv_call_reload_commit(PrivChannel *c) {
        struct tsm_priv_reload m;
        struct tsm_priv_reply reply;

        tsm_priv_init(&m, TSM_PRIV_RELOAD, 0, 0);
        m.commit = 1;
        return call(c, &m, -EBADF, &reply, NULL);
}

/* The message and its payload in one block, which the request holds while it waits to be sent
 * (priv_request_free() frees it by its header). Until then the header's payload_len is the room
 * made for the payload. */
struct PrivPayload {
        struct tsm_priv_guest_request msg;
        uint8_t data[];
};
_Static_assert(offsetof(PrivPayload, data) == sizeof(struct tsm_priv_guest_request),
               "the payload right after the fixed part, where the monitor reads it");

PrivPayload *priv_payload_new(size_t size) {
        PrivPayload *p;

        if (size > UINT32_MAX - sizeof(PrivPayload))
                return NULL;
        p = malloc(sizeof(PrivPayload) + size);
        if (!p)
                return NULL;
        p->msg = (struct tsm_priv_guest_request) { .hdr.payload_len = (uint32_t) size };
        return p;
}

void *priv_payload_data(PrivPayload *p) {
        return p->data;
}

PrivPayload *priv_payload_free(PrivPayload *p) {
        return mfree(p);
}

int priv_call_guest_request(PrivChannel *c, uint32_t slot, uint32_t context, uint32_t vdevice,
                            TsmBackendType backend, const char *scope, PrivPayload *payload,
                            size_t request_len, size_t max_response, PrivRequestCallback cb, void *userdata,
                            PrivRequest **ret) {
        _cleanup_(priv_payload_freep) PrivPayload *p = payload;
        struct tsm_priv_guest_request *m = &p->msg;
        PrivRequest *r;

        assert(request_len <= m->hdr.payload_len);

        if (c->gone)
                return -ECONNRESET;
        if (request_len > TSM_PRIV_PAYLOAD_MAX)
                return -E2BIG;
        r = new0(PrivRequest, 1);
        if (!r)
                return -ENOMEM;
        r->queued = &TAKE_PTR(p)->msg.hdr;
        tsm_priv_init(m, TSM_PRIV_GUEST_REQUEST, priv_channel_next_cookie(c), (uint32_t) request_len);
        m->slot = slot;
        m->context = context;
        m->vdevice = vdevice;
        m->max_response = (uint32_t) MIN(max_response, (size_t) TSM_PRIV_PAYLOAD_MAX);
        m->backend = (uint32_t) backend;
        if (copy_string(m->scope, sizeof(m->scope), scope) < 0) {
                priv_request_free(r);
                return -ENOENT;
        }
        r->channel = c;
        r->slot = slot;
        r->context = context;
        r->vdevice = vdevice;
        r->cookie = m->hdr.cookie;
        r->callback = cb;
        r->userdata = userdata;
        r->counted = true;
        return priv_channel_submit(c, r, ret);
}

/* A vDevice message answered from the monitor's loop when the TSM is done. */
static int vdevice_request(PrivChannel *c, uint32_t type, uint32_t slot, uint32_t context, uint32_t vdevice,
                           PrivRequestCallback cb, void *userdata, PrivRequest **ret) {
        struct tsm_priv_vdevice *m;
        PrivRequest *r;

        assert(cb);

        if (c->gone)
                return -ECONNRESET;
        r = new0(PrivRequest, 1);
        if (!r)
                return -ENOMEM;
        m = new0(struct tsm_priv_vdevice, 1);
        if (!m) {
                free(r);
                return -ENOMEM;
        }
        tsm_priv_init(m, type, priv_channel_next_cookie(c), 0);
        m->slot = slot;
        m->context = context;
        m->vdevice = vdevice;
        *r = (PrivRequest){ .channel = c, .cookie = m->hdr.cookie, .slot = slot, .context = context,
                            .vdevice = vdevice, .callback = cb, .userdata = userdata, .queued = &m->hdr };
        return priv_channel_submit(c, r, ret);
}

int priv_call_set_bound(PrivChannel *c, uint32_t slot, uint32_t context, uint32_t vdevice, bool bind,
                        PrivRequestCallback cb, void *userdata, PrivRequest **ret) {
        return vdevice_request(c, bind ? TSM_PRIV_BIND_VDEVICE : TSM_PRIV_UNBIND_VDEVICE, slot, context, vdevice, cb,
                               userdata, ret);
}

int priv_call_settle_vdevice(PrivChannel *c, uint32_t slot, uint32_t context, uint32_t vdevice,
                             PrivRequestCallback cb, void *userdata, PrivRequest **ret) {
        return vdevice_request(c, TSM_PRIV_SETTLE_VDEVICE, slot, context, vdevice, cb, userdata, ret);
}

/* A device message answered from the monitor's loop when the kernel is done. */
static int device_request(PrivChannel *c, uint32_t type, const char *pci_address, const char *tsm,
                          PrivRequestCallback cb, void *userdata, PrivRequest **ret) {
        struct tsm_priv_device *m;
        PrivRequest *r;

        assert(cb);

        if (c->gone)
                return -ECONNRESET;
        m = new0(struct tsm_priv_device, 1);
        if (!m)
                return -ENOMEM;
        tsm_priv_init(m, type, 0, 0);
        if (copy_string(m->pci_address, sizeof(m->pci_address), pci_address) < 0) {
                free(m);
                return -ENODEV; /* no device has such an address */
        }
        if (tsm && copy_string(m->tsm, sizeof(m->tsm), tsm) < 0) {
                free(m);
                return -ENXIO; /* nor a TSM such a name */
        }
        r = new0(PrivRequest, 1);
        if (!r) {
                free(m);
                return -ENOMEM;
        }
        m->hdr.cookie = priv_channel_next_cookie(c);
        *r = (PrivRequest){ .channel = c, .cookie = m->hdr.cookie, .slot = TSM_PRIV_SLOT_WORKER, .callback = cb,
                            .userdata = userdata, .queued = &m->hdr };
        return priv_channel_submit(c, r, ret);
}

int priv_call_connect_device(PrivChannel *c, const char *pci_address, const char *tsm, PrivRequestCallback cb,
                             void *userdata, PrivRequest **ret) {
        assert(tsm);
        return device_request(c, TSM_PRIV_CONNECT_DEVICE, pci_address, tsm, cb, userdata, ret);
}

int priv_call_disconnect_device(PrivChannel *c, const char *pci_address, PrivRequestCallback cb, void *userdata,
                                PrivRequest **ret) {
        return device_request(c, TSM_PRIV_DISCONNECT_DEVICE, pci_address, NULL, cb, userdata, ret);
}
