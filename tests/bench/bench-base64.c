/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the base64 codec (proto/base64.c) costs a 4 KiB guest payload: base64_decode() of its
 * 5,464-character text (a write's request, in the worker) and base64_encode() of its bytes (a
 * read's response, in the worker; a write's request, in the client), each call with its
 * malloc() and free() as in tsmd. Printed as ratios against a memcpy() of the same 4 KiB
 * measured in the same run, so that runs on machines of different speed (or the same machine
 * under different load) compare; the decoder's output is also checked against the payload.
 * Each twice: base64_decode() and base64_encode() as tsmd calls them (SSSE3's steps where the
 * CPU has it), and base64_decode_portable() and base64_encode_portable() (the steps every CPU
 * runs); the portable encoder's text is checked against the other's. Rounds of the five
 * alternate and each prints its median round. Never asserts a time.
 * Usage: bench-base64 [--quick]. Runs in: tests (benchmark).
 */

#include <stdio.h>
#include <unistd.h>

#include "base64.h"
#include "bench-util.h"
#include "macro.h"

#define PAYLOAD 4096
#define ROUNDS 9

static unsigned n_calls = 20000; /* per round */

static void die(const char *what, int r) {
        fprintf(stderr, "bench-base64: %s: %s\n", what, strerror(r < 0 ? -r : r));
        exit(EXIT_FAILURE);
}

/* Keeps the compiler from dropping or merging the work whose result p is. */
static inline void keep(const void *p) {
        __asm__ volatile("" : : "r"(p) : "memory");
}

static uint8_t payload[PAYLOAD], copy[PAYLOAD];
static char *text;
static size_t text_len;

static uint64_t round_memcpy(void) {
        uint64_t t0 = now_nsec();

        for (unsigned i = 0; i < n_calls; i++) {
                keep(payload);
                memcpy(copy, payload, sizeof(copy));
                keep(copy);
        }
        return now_nsec() - t0;
}

static uint64_t round_decode(int (*decode)(const char *, size_t, void **, size_t *)) {
        uint64_t t0 = now_nsec();

        for (unsigned i = 0; i < n_calls; i++) {
                void *out;
                size_t len;
                int r;

                keep(text);
                r = decode(text, text_len, &out, &len);
                if (r < 0)
                        die("base64_decode", r);
                keep(out);
                free(out);
        }
        return now_nsec() - t0;
}

static uint64_t round_encode(int (*encode)(const void *, size_t, char **)) {
        uint64_t t0 = now_nsec();

        for (unsigned i = 0; i < n_calls; i++) {
                char *out;
                int r;

                keep(payload);
                r = encode(payload, sizeof(payload), &out);
                if (r < 0)
                        die("base64_encode", r);
                keep(out);
                free(out);
        }
        return now_nsec() - t0;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static double median_ns_per_call(uint64_t *rounds) {
        qsort(rounds, ROUNDS, sizeof(*rounds), cmp_u64);
        return (double) rounds[ROUNDS / 2] / n_calls;
}

static void print_row(const char *what, double ns, size_t bytes, double base_ns) {
        printf("%-40s %10.1f %10.2f %11.2fx\n", what, ns, (double) bytes / ns, ns / base_ns);
}

int main(int argc, char *argv[]) {
        uint64_t t_memcpy[ROUNDS], t_decode[ROUNDS], t_portable[ROUNDS], t_encode[ROUNDS], t_encode_portable[ROUNDS];
        double memcpy_ns, decode_ns, portable_ns, encode_ns, encode_portable_ns;
        char *portable_text;
        void *back;
        size_t len;
        int r;

        if (argc > 1 && streq(argv[1], "--quick"))
                n_calls = 200;
        else if (argc > 1) {
                fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
                return EXIT_FAILURE;
        }

        /* Bytes with no pattern (xorshift), as a TDISP payload's data is to the codec. */
        for (uint64_t i = 0, x = 0x9e3779b97f4a7c15; i < PAYLOAD; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                payload[i] = (uint8_t) (x >> 32);
        }
        r = base64_encode(payload, sizeof(payload), &text);
        if (r < 0)
                die("base64_encode", r);
        text_len = strlen(text);
        r = base64_decode(text, text_len, &back, &len);
        if (r < 0)
                die("base64_decode", r);
        if (len != PAYLOAD || memcmp(back, payload, len) != 0)
                die("decoded payload differs", -EBADMSG);
        free(back);
        r = base64_encode_portable(payload, sizeof(payload), &portable_text);
        if (r < 0)
                die("base64_encode_portable", r);
        if (!streq(portable_text, text))
                die("encoded payload differs (portable steps)", -EBADMSG);
        free(portable_text);
        r = base64_decode_portable(text, text_len, &back, &len);
        if (r < 0)
                die("base64_decode_portable", r);
        if (len != PAYLOAD || memcmp(back, payload, len) != 0)
                die("decoded payload differs (portable steps)", -EBADMSG);
        free(back);

        for (unsigned k = 0; k < ROUNDS; k++) {
                t_memcpy[k] = round_memcpy();
                t_decode[k] = round_decode(base64_decode);
                t_portable[k] = round_decode(base64_decode_portable);
                t_encode[k] = round_encode(base64_encode);
                t_encode_portable[k] = round_encode(base64_encode_portable);
        }
        memcpy_ns = median_ns_per_call(t_memcpy);
        decode_ns = median_ns_per_call(t_decode);
        portable_ns = median_ns_per_call(t_portable);
        encode_ns = median_ns_per_call(t_encode);
        encode_portable_ns = median_ns_per_call(t_encode_portable);

        printf("# bench-base64: a %d B payload, %zu characters of base64; %u calls per round, median of %d\n"
               "# rounds (memcpy, decode and encode both ways alternate). bytes/ns counts the payload's bytes.\n"
               "# CPUs online: %ld, load average %s; the codec takes SSSE3's steps: %s.\n",
               PAYLOAD, text_len, n_calls, ROUNDS, sysconf(_SC_NPROCESSORS_ONLN), loadavg(),
               base64_uses_ssse3() ? "yes" : "no");
        printf("%-40s %10s %10s %12s\n", "", "ns/call", "bytes/ns", "/ memcpy");
        print_row("memcpy() of the payload (baseline)", memcpy_ns, PAYLOAD, memcpy_ns);
        print_row("base64_decode() of its text", decode_ns, PAYLOAD, memcpy_ns);
        print_row("  the same, portable steps alone", portable_ns, PAYLOAD, memcpy_ns);
        print_row("base64_encode() of the payload", encode_ns, PAYLOAD, memcpy_ns);
        print_row("  the same, portable steps alone", encode_portable_ns, PAYLOAD, memcpy_ns);
        free(text);
        return EXIT_SUCCESS;
}
