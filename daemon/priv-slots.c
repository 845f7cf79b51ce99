/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Request counts per client slot, in an open-addressing hash table. Runs in: worker. */

#include <errno.h>
#include <stdlib.h>

#include "macro.h"
#include "priv-slots.h"
#include "tsm-priv.h"

#define PRIV_SLOTS_MIN_CAPACITY 16U

struct PrivSlots {
        PrivSlotCounts *entries; /* capacity of them, a power of two; free ones count nothing */
        size_t capacity;
        size_t n;                /* at most half the capacity */
};

static bool entry_free(const PrivSlotCounts *e) {
        return e->n_sent == 0 && e->n_waiting == 0;
}

/* Slots are handed out in sequence: a multiplicative hash spreads them. */
static size_t home_of(const PrivSlots *s, uint32_t slot) {
        return (size_t) (slot * UINT32_C(2654435761)) & (s->capacity - 1);
}

int priv_slots_new(PrivSlots **ret) {
        PrivSlots *s = new0(PrivSlots, 1);

        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

PrivSlots *priv_slots_free(PrivSlots *s) {
        if (!s)
                return NULL;
        free(s->entries);
        return mfree(s);
}

size_t priv_slots_size(const PrivSlots *s) {
        return s->n;
}

PrivSlotCounts *priv_slots_find(PrivSlots *s, uint32_t slot) {
        if (s->capacity == 0)
                return NULL;
        for (size_t i = home_of(s, slot);; i = (i + 1) & (s->capacity - 1)) {
                PrivSlotCounts *e = &s->entries[i];

                if (entry_free(e))
                        return NULL;
                if (e->slot == slot)
                        return e;
        }
}

/* Where an entry for slot goes: the first free place from its home on. */
static PrivSlotCounts *place_for(PrivSlots *s, uint32_t slot) {
        size_t i = home_of(s, slot);

        while (!entry_free(&s->entries[i]))
                i = (i + 1) & (s->capacity - 1);
        return &s->entries[i];
}

static int grow(PrivSlots *s) {
        size_t capacity = MAX(s->capacity * 2, (size_t) PRIV_SLOTS_MIN_CAPACITY);
        PrivSlotCounts *old = s->entries, *entries = new0(PrivSlotCounts, capacity);
        size_t old_capacity = s->capacity;

        if (!entries)
                return -ENOMEM;
        s->entries = entries;
        s->capacity = capacity;
        for (size_t i = 0; i < old_capacity; i++)
                if (!entry_free(&old[i]))
                        *place_for(s, old[i].slot) = old[i];
        free(old);
        return 0;
}

/* Empties the entry at i, and moves back the entries after it that could not be at their home
 * because it was taken, so that every lookup still finds its entry before a free place. */
static void remove_at(PrivSlots *s, size_t i) {
        size_t mask = s->capacity - 1;

        for (size_t j = (i + 1) & mask; !entry_free(&s->entries[j]); j = (j + 1) & mask) {
                size_t home = home_of(s, s->entries[j].slot);

                /* Movable to i unless its home lies cyclically in (i, j]. */
                if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
                        s->entries[i] = s->entries[j];
                        i = j;
                }
        }
        s->entries[i] = (PrivSlotCounts) {};
        s->n--;
}

int priv_slots_add(PrivSlots *s, uint32_t slot, int sent, int waiting) {
        PrivSlotCounts *e = priv_slots_find(s, slot);

        if (!e) {
                assert(sent >= 0 && waiting >= 0);
                if (sent == 0 && waiting == 0)
                        return 0;
                if ((s->n + 1) * 2 > s->capacity && grow(s) < 0)
                        return -ENOMEM;
                e = place_for(s, slot);
                e->slot = slot;
                s->n++;
        }
        assert(sent >= 0 || e->n_sent >= (uint32_t) -sent);
        assert(waiting >= 0 || e->n_waiting >= (uint32_t) -waiting);
        e->n_sent += (uint32_t) sent;
        e->n_waiting += (uint32_t) waiting;
        if (entry_free(e))
                remove_at(s, (size_t) (e - s->entries));
        return 0;
}

uint32_t priv_slot_counter_next(PrivSlotCounter *c, PrivSlotInUse in_use, void *userdata) {
        assert(c);
        assert(in_use);

        for (;;) {
                uint32_t slot = ++c->last;

                if (slot == TSM_PRIV_SLOT_WORKER) {
                        c->wrapped = true;
                        continue;
                }
                if (!c->wrapped || !in_use(slot, userdata))
                        return slot;
        }
}
