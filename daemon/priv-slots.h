/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Per client slot, how many of its guest requests the monitor holds and how many wait in the
 * worker behind them: what the channel's quota asks on every request. A hash table (open
 * addressing, linear probing, deletion by backward shift), so that the question costs O(1)
 * rather than a walk of every request in flight. An entry exists while one of its counts is
 * not zero. Runs in: worker.
 */
#pragma once

#include <stdint.h>

typedef struct PrivSlots PrivSlots;

typedef struct PrivSlotCounts {
        uint32_t slot;
        uint32_t n_sent;    /* the monitor holds them */
        uint32_t n_waiting; /* queued in the worker */
} PrivSlotCounts;

int priv_slots_new(PrivSlots **ret);
PrivSlots *priv_slots_free(PrivSlots *s);

/* The slot's counts, or NULL if both are zero. Valid until the next priv_slots_add(). */
PrivSlotCounts *priv_slots_find(PrivSlots *s, uint32_t slot);
/* Adds to the slot's counts (negative deltas take away; a count never goes below zero). Returns
 * 0, or -ENOMEM when a new entry does not fit (nothing changed then). */
int priv_slots_add(PrivSlots *s, uint32_t slot, int sent, int waiting);
/* Number of slots with a count that is not zero. */
size_t priv_slots_size(const PrivSlots *s);
