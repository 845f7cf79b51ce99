/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The worker's request counts per client slot (daemon/priv-slots.h), against a plain array:
 * random additions and removals over slots handed out in sequence (as the worker does) and
 * over scattered ones, enough to grow the table many times and to empty it, with every
 * lookup checked after each step. Runs in: tests.
 */

#include <stdlib.h>

#include "harness.h"
#include "macro.h"
#include "priv-slots.h"

#define N_SLOTS 600
#define N_STEPS 200000

typedef struct Model {
        uint32_t slot[N_SLOTS];
        uint32_t sent[N_SLOTS], waiting[N_SLOTS];
} Model;

static void expect_same(PrivSlots *s, const Model *m) {
        size_t n = 0;

        for (size_t i = 0; i < N_SLOTS; i++) {
                const PrivSlotCounts *e = priv_slots_find(s, m->slot[i]);

                if (m->sent[i] == 0 && m->waiting[i] == 0) {
                        ASSERT_NULL(e);
                        continue;
                }
                n++;
                ASSERT_NOT_NULL(e);
                ASSERT_EQ(e->slot, m->slot[i]);
                ASSERT_EQ(e->n_sent, m->sent[i]);
                ASSERT_EQ(e->n_waiting, m->waiting[i]);
        }
        ASSERT_EQ(priv_slots_size(s), n);
}

static void run(const Model *slots, unsigned seed) {
        _cleanup_free_ Model *m = new0(Model, 1);
        PrivSlots *s;

        ASSERT_NOT_NULL(m);
        memcpy(m->slot, slots->slot, sizeof(m->slot));
        ASSERT_OK(priv_slots_new(&s));
        srand(seed);
        for (unsigned step = 0; step < N_STEPS; step++) {
                size_t i = (size_t) rand() % N_SLOTS;
                /* Mostly adding early on, mostly taking away later: the table fills and empties. */
                bool add = (unsigned) rand() % N_STEPS >= step;
                int sent = 0, waiting = 0;

                if (rand() % 2)
                        sent = add ? 1 : (m->sent[i] > 0 ? -1 : 0);
                else
                        waiting = add ? 1 : (m->waiting[i] > 0 ? -1 : 0);
                ASSERT_OK(priv_slots_add(s, m->slot[i], sent, waiting));
                m->sent[i] += (uint32_t) sent;
                m->waiting[i] += (uint32_t) waiting;
                if (step % 97 == 0 || step > N_STEPS - 1000)
                        expect_same(s, m);
        }
        /* Emptied entirely. */
        for (size_t i = 0; i < N_SLOTS; i++)
                ASSERT_OK(priv_slots_add(s, m->slot[i], -(int) m->sent[i], -(int) m->waiting[i]));
        ASSERT_EQ(priv_slots_size(s), 0);
        ASSERT_NULL(priv_slots_find(s, m->slot[0]));
        priv_slots_free(s);
}

TEST(sequential_slots) {
        _cleanup_free_ Model *slots = new0(Model, 1);

        ASSERT_NOT_NULL(slots);
        for (size_t i = 0; i < N_SLOTS; i++)
                slots->slot[i] = (uint32_t) i + 1;
        run(slots, 1);
}

TEST(scattered_slots) {
        _cleanup_free_ Model *slots = new0(Model, 1);

        ASSERT_NOT_NULL(slots);
        /* Multiples of a power of two: the ones a weak hash would pile onto one place. */
        for (size_t i = 0; i < N_SLOTS; i++)
                slots->slot[i] = (uint32_t) (i * 1024 + (i % 3 == 0 ? UINT32_MAX - 4096 * 1024 : 0));
        run(slots, 2);
}

TEST(zero_counts_make_no_entry) {
        PrivSlots *s;

        ASSERT_OK(priv_slots_new(&s));
        ASSERT_OK(priv_slots_add(s, 7, 0, 0));
        ASSERT_EQ(priv_slots_size(s), 0);
        ASSERT_OK(priv_slots_add(s, 7, 2, 1));
        ASSERT_OK(priv_slots_add(s, 7, -2, 0));
        ASSERT_EQ(priv_slots_find(s, 7)->n_waiting, 1u);
        ASSERT_OK(priv_slots_add(s, 7, 1, -1)); /* waiting to sent, in one step */
        ASSERT_EQ(priv_slots_find(s, 7)->n_sent, 1u);
        ASSERT_OK(priv_slots_add(s, 7, -1, 0));
        ASSERT_NULL(priv_slots_find(s, 7));
        ASSERT_EQ(priv_slots_size(s), 0);
        priv_slots_free(s);
}

/* Slots in use for slot_counter_wraps: 1 and 3 (connected clients, say). */
static bool in_use_1_3(uint32_t slot, void *userdata) {
        unsigned *n_asked = userdata;

        (*n_asked)++;
        return slot == 1 || slot == 3;
}

/* After 2^32 connections the numbering wraps: never to 0 (the worker's), never to a slot still
 * in use; nothing is asked before the wrap. */
TEST(slot_counter_wraps) {
        PrivSlotCounter c = { .last = UINT32_MAX - 2 };
        unsigned n_asked = 0;

        ASSERT_EQ(priv_slot_counter_next(&c, in_use_1_3, &n_asked), UINT32_MAX - 1);
        ASSERT_EQ(priv_slot_counter_next(&c, in_use_1_3, &n_asked), UINT32_MAX);
        ASSERT_EQ(n_asked, 0u);
        ASSERT_EQ(priv_slot_counter_next(&c, in_use_1_3, &n_asked), 2u);
        ASSERT_EQ(priv_slot_counter_next(&c, in_use_1_3, &n_asked), 4u);
        ASSERT_EQ(priv_slot_counter_next(&c, in_use_1_3, &n_asked), 5u);
}

TEST_MAIN();
