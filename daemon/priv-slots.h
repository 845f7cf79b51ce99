/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Per client slot, how many of its guest requests the monitor holds and how many of its
 * requests (binds and unbinds too) wait in the worker behind them: what the channel's quota
 * asks on every request. A hash table (open
 * addressing, linear probing, deletion by backward shift), so that the question costs O(1)
 * rather than a walk of every request in flight. An entry exists while one of its counts is
 * not zero. Runs in: worker.
 */
#pragma once

#include <stdbool.h>
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

/* ---- numbering --------------------------------------------------------------------------- */

/* Hands out client slots: 1, 2, ... and, after 2^32 connections, again from 1, never
 * TSM_PRIV_SLOT_WORKER (0), and past the wrap never one in_use() says is still live (a client
 * connected, or requests of a gone one the monitor still holds): tsm-priv.h's "never reused
 * while in use". Before the wrap nothing is asked. */
typedef struct PrivSlotCounter {
        uint32_t last;
        bool wrapped;
} PrivSlotCounter;

typedef bool (*PrivSlotInUse)(uint32_t slot, void *userdata);

/* The next free slot. Needs fewer than 2^32 - 1 slots in use (each is a connection). */
uint32_t priv_slot_counter_next(PrivSlotCounter *c, PrivSlotInUse in_use, void *userdata);
