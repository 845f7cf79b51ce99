/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reclaim tokens: what OpenContext and AdoptContext gave for each context of the current
 * connection, so that the VMM can keep it and take the context back with
 * tsm_context_reclaim() after tsmd restarts; and the contexts that reclaims libtsm abandoned
 * (timed out) took back, kept for a retry with the same token. Documented in tsm.h. Runs in:
 * the VMM process.
 */

#include "libtsm-internal.h"

/* SECURITY: a token takes its context, devices bound, back (its uid's): none stays in freed
 * memory for a core dump or the next allocation to show. */
static void token_free(char *token) {
        if (token)
                explicit_bzero(token, strlen(token));
        free(token);
}

static ssize_t token_find(const TsmClient *c, uint64_t context) {
        for (size_t i = 0; i < c->n_tokens; i++)
                if (c->tokens[i].context == context)
                        return (ssize_t) i;
        return -1;
}

int ltsm_tokens_remember(TsmClient *c, uint64_t context, const char *token) {
        char *copy = strdup(token);

        if (!copy)
                return -ENOMEM;
        if (!GREEDY_REALLOC(c->tokens, c->allocated_tokens, c->n_tokens + 1)) {
                token_free(copy);
                return -ENOMEM;
        }
        ltsm_tokens_forget(c, context);
        c->tokens[c->n_tokens++] = (TsmReclaimToken){ .context = context, .token = copy };
        return 0;
}

void ltsm_tokens_forget(TsmClient *c, uint64_t context) {
        ssize_t i = token_find(c, context);

        if (i < 0)
                return;
        token_free(c->tokens[i].token);
        c->tokens[i] = c->tokens[--c->n_tokens];
}

void ltsm_tokens_clear(TsmClient *c) {
        for (size_t i = 0; i < c->n_tokens; i++)
                token_free(c->tokens[i].token);
        c->n_tokens = 0;
        /* The connection that held their contexts is gone, its abandoned calls with it: no late
         * reply comes for the unanswered ones. An answered one's context went with it, to be
         * reclaimed by the renewed token (a restarted tsmd knows it by that one only). */
        for (TsmLateReclaim *l = TAILQ_FIRST(&c->late_reclaims), *next; l; l = next) {
                next = TAILQ_NEXT(l, entry);
                if (!l->answered) {
                        ltsm_late_reclaim_free(l);
                        continue;
                }
                l->moved = true;
                l->iommufd = safe_close(l->iommufd);
        }
}

void ltsm_tokens_free(TsmClient *c) {
        ltsm_tokens_clear(c);
        while (!TAILQ_EMPTY(&c->late_reclaims))
                ltsm_late_reclaim_free(TAILQ_FIRST(&c->late_reclaims));
        c->tokens = mfree(c->tokens);
        c->allocated_tokens = 0;
}

/* tsm_context_get_reclaim_token(): see tsm.h. */
_public_ int tsm_context_get_reclaim_token(TsmClient *c, uint64_t context, char **ret_token) {
        ssize_t i;
        char *copy;

        assert_return(c, -EINVAL);
        assert_return_client(c, ret_token, -EINVAL);

        i = token_find(c, context);
        if (i < 0)
                return ltsm_error_set_local(c, -ENOENT);
        copy = strdup(c->tokens[i].token);
        if (!copy)
                return ltsm_error_set_local(c, -ENOMEM);
        ltsm_error_clear(c);
        *ret_token = copy;
        return 0;
}

/* ---- late reclaims ------------------------------------------------------------------------ */

int ltsm_late_reclaim_new(TsmClient *c, const char *token, TsmLateReclaim **ret) {
        TsmLateReclaim *l = new0(TsmLateReclaim, 1);

        if (!l)
                return -ENOMEM;
        l->token = strdup(token);
        if (!l->token) {
                free(l);
                return -ENOMEM;
        }
        l->client = c;
        l->iommufd = -EBADF;
        /* After the answered ones: replies come in call order, so those are all older. */
        TAILQ_INSERT_TAIL(&c->late_reclaims, l, entry);
        *ret = l;
        return 0;
}

void ltsm_late_reclaim_free(TsmLateReclaim *l) {
        if (!l)
                return;
        TAILQ_REMOVE(&l->client->late_reclaims, l, entry);
        if (l->answered)
                l->client->n_late_reclaims_answered--;
        if (l->iommufd >= 0)
                safe_close(l->iommufd);
        /* SECURITY: wiped as the tokens are: until the late success came (or if it never
         * does) it still takes the context back, and the renewed one does. */
        token_free(l->token);
        token_free(l->renewed);
        free(l);
}

TsmLateReclaim *ltsm_late_reclaim_find(TsmClient *c, const char *token, bool moved) {
        TsmLateReclaim *l;

        TAILQ_FOREACH(l, &c->late_reclaims, entry)
                if (l->answered && l->moved == moved && streq(l->token, token))
                        return l;
        return NULL;
}

int ltsm_late_reclaim_answered(TsmLateReclaim *l, uint64_t context, const char *renewed, int iommufd) {
        TsmClient *c = l->client;
        TsmLateReclaim *old;

        l->renewed = strdup(renewed);
        if (!l->renewed) {
                safe_close(iommufd);
                ltsm_late_reclaim_free(l);
                return -ENOMEM;
        }

        /* A token takes one context: an entry an older tsmd (one that does not renew tokens)
         * left under it is stale, and a moved one is what this reclaim took back. */
        while ((old = ltsm_late_reclaim_find(c, l->token, false)) || (old = ltsm_late_reclaim_find(c, l->token, true)))
                ltsm_late_reclaim_free(old);
        l->answered = true;
        l->context = context;
        l->iommufd = iommufd;
        c->n_late_reclaims_answered++;
        /* Bounded: each holds an fd (until moved). The context stays the connection's (its token too), only
         * a retry of that reclaim no longer finds it. The oldest is the first. */
        if (c->n_late_reclaims_answered > TSM_LATE_RECLAIMS_MAX)
                ltsm_late_reclaim_free(TAILQ_FIRST(&c->late_reclaims));
        return 0;
}

void ltsm_token_freep(char **token) {
        token_free(*token);
}

void ltsm_late_reclaims_forget_context(TsmClient *c, uint64_t context) {
        TsmLateReclaim *l, *next;

        for (l = TAILQ_FIRST(&c->late_reclaims); l; l = next) {
                next = TAILQ_NEXT(l, entry);
                /* A moved one's context was the old connection's: the number means another. */
                if (l->answered && !l->moved && l->context == context)
                        ltsm_late_reclaim_free(l);
        }
}
