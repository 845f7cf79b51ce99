/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* io.tsmd.Admin and who counts as an administrator. Runs in: worker. */
#pragma once

#include "manager.h"

int admin_methods_register(Manager *m);

/* Stops the audit follows of a connection that went away (conn NULL: all of them). */
void admin_forget_followers(Manager *m, VarlinkConn *conn);
/* SECURITY: a follower sees every record. Ends (PermissionDenied, audited) the streams of
 * those the policy in force no longer makes administrators: call it when the policy changes. */
void admin_recheck_followers(Manager *m);
/* Cancels the audit queries of a connection that went away (conn NULL: all of them); each is
 * answered (unheard, but audited) with io.tsmd.System ECANCELED. */
void admin_forget_queries(Manager *m, VarlinkConn *conn);

/* Records the call's final answer as every admin call's is (io.tsmd.Service's Reload and
 * SetLogLevel are admin actions too): under its error's name for a refusal, answered once the
 * record is durable. A caller who is no administrator is refused, and its refusal counts against
 * its uid's refusal budget and room in flight as any other (audit-budget.h). Call before
 * answering. */
void admin_audit_answer(Manager *m, VarlinkCall *call);

/* Root, and whom the policy's [Admin] names (identity taken at connect time). */
bool manager_is_admin(Manager *m, VarlinkConn *conn);
