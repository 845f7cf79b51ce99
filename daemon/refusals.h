/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the Varlink server refuses on its own, before any method runs, goes into the audit log
 * like every other refusal: connections past a limit, messages and timeouts that end a
 * connection (event "connection", the refusal's io.tsmd name as result, and the server's reason
 * where it gives one), and calls it answers
 * with a standard error (the method as event, the error as result, the answer held until the
 * record is durable). Each uid's are recorded one by one within its refusal budget and counted
 * in its summary past it (audit-budget.h). Runs in: worker.
 */
#pragma once

#include "manager.h"

void refusals_setup(Manager *m);
