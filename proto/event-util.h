/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libevent cleanup helpers. Runs in: monitor and worker. */
#pragma once

#include <event2/buffer.h>
#include <event2/event.h>

#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC_FULL(struct event *, event_free, NULL);
DEFINE_TRIVIAL_CLEANUP_FUNC_FULL(struct evbuffer *, evbuffer_free, NULL);
DEFINE_TRIVIAL_CLEANUP_FUNC_FULL(struct event_base *, event_base_free, NULL);
