/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Records in flight per uid, and of the unnamed pool. Runs in: worker (event loop thread). */

#include <stdlib.h>

#include "audit-shares.h"

/* A uid is in the table while it has records in flight: at most as many entries as records. */
#define SHARES_BUCKETS 256u

typedef struct Share {
        uid_t uid;
        unsigned n;
        struct Share *next;
} Share;

struct AuditShares {
        unsigned per_uid, unnamed;
        unsigned n_unnamed;
        Share *buckets[SHARES_BUCKETS];
};

int audit_shares_new(unsigned per_uid, unsigned unnamed, AuditShares **ret) {
        AuditShares *s;

        assert_return(per_uid > 0, -EINVAL);
        assert_return(ret, -EINVAL);

        s = new0(AuditShares, 1);
        if (!s)
                return -ENOMEM;
        s->per_uid = per_uid;
        s->unnamed = unnamed;
        *ret = s;
        return 0;
}

AuditShares *audit_shares_free(AuditShares *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < SHARES_BUCKETS; i++)
                while (s->buckets[i]) {
                        Share *e = s->buckets[i];

                        s->buckets[i] = e->next;
                        free(e);
                }
        return mfree(s);
}

static Share **find(const AuditShares *s, uid_t uid) {
        Share *const *p = &s->buckets[(uid * 2654435761u) % SHARES_BUCKETS];

        while (*p && (*p)->uid != uid)
                p = &(*p)->next;
        return (Share **) p;
}

int audit_shares_take(AuditShares *s, uid_t uid, AuditPool pool) {
        Share **p;

        assert(s);
        assert(pool >= 0 && pool < _AUDIT_POOL_MAX);

        if (pool == AUDIT_POOL_UNNAMED && s->n_unnamed >= s->unnamed)
                return -ENOBUFS;
        p = find(s, uid);
        if (!*p) {
                *p = new0(Share, 1);
                if (!*p)
                        return -ENOMEM;
                (*p)->uid = uid;
        }
        if ((*p)->n >= s->per_uid)
                return -ENOBUFS;
        (*p)->n++;
        if (pool == AUDIT_POOL_UNNAMED)
                s->n_unnamed++;
        return 0;
}

void audit_shares_give(AuditShares *s, uid_t uid, AuditPool pool) {
        Share **p, *e;

        assert(s);

        p = find(s, uid);
        e = *p;
        assert(e && e->n > 0);
        if (pool == AUDIT_POOL_UNNAMED) {
                assert(s->n_unnamed > 0);
                s->n_unnamed--;
        }
        if (--e->n == 0) {
                *p = e->next;
                free(e);
        }
}

unsigned audit_shares_n_unnamed(const AuditShares *s) {
        return s ? s->n_unnamed : 0;
}

unsigned audit_shares_n_of(const AuditShares *s, uid_t uid) {
        Share *e;

        if (!s)
                return 0;
        e = *find(s, uid);
        return e ? e->n : 0;
}
