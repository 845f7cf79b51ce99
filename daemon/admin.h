/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* io.tsmd.Admin and who counts as an administrator. Runs in: daemon (worker). */
#pragma once

#include "manager.h"

int admin_methods_register(Manager *m);

/* Stops the audit follows of a connection that went away (conn NULL: all of them). */
void admin_forget_followers(Manager *m, VarlinkConn *conn);

/* Root, and whom the policy's [Admin] names (identity taken at connect time). */
bool manager_is_admin(Manager *m, VarlinkConn *conn);
