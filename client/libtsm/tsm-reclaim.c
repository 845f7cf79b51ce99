/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reclaim tokens: what OpenContext and AdoptContext gave for each context of the current
 * connection, so that the VMM can keep it and take the context back with
 * tsm_context_reclaim() after tsmd restarts. Documented in tsm.h. Runs in: the VMM process.
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
}

void ltsm_tokens_free(TsmClient *c) {
        ltsm_tokens_clear(c);
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
