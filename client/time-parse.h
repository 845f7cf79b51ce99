/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Times as an administrator writes them for tsmctl audit --since=/--until=, in journalctl's
 * words: "2024-05-06", "2024-05-06 07:08", "2024-05-06 07:08:09" (local time; or with a T for
 * the space, "2024-05-06T07:08:09"; and with a UTC offset as the audit table shows times,
 * "2024-05-06T07:08:09+02:00", or as tsmd's records have them, "2024-05-06T05:08:09.123456Z"),
 * "@1714979289"
 * (seconds since the epoch), "now", "today", "yesterday", "tomorrow" (local midnight), and
 * "-15min", "+2h" (relative to now; s, min, h, d, w and their long names). Runs in: the
 * admin's shell, tests.
 */
#pragma once

#include <stdint.h>

/* Parses s relative to now_usec (CLOCK_REALTIME microseconds; passed in, so tests fix the
 * clock) into CLOCK_REALTIME microseconds. -EINVAL for what is none of the forms above (a date
 * that does not exist among them: 2023-02-29), -ERANGE for a time before the epoch or past
 * what a Varlink int holds. */
int time_parse(const char *s, uint64_t now_usec, uint64_t *ret_usec);
