/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * SHA-256 (proto/sha256.c) against the FIPS 180-4 examples and NIST's long message, and at the
 * padding's edges (55, 56, 63, 64 bytes...), whole and fed a byte at a time. Runs in: tests.
 */

#include <stdio.h>
#include <stdlib.h>

#include "harness.h"
#include "macro.h"
#include "sha256.h"

static void hex(const uint8_t d[static SHA256_DIGEST_SIZE], char ret[static 2 * SHA256_DIGEST_SIZE + 1]) {
        for (size_t i = 0; i < SHA256_DIGEST_SIZE; i++)
                snprintf(ret + 2 * i, 3, "%02x", d[i]);
}

static void check(const void *data, size_t n, const char *want) {
        uint8_t d[SHA256_DIGEST_SIZE];
        char text[2 * SHA256_DIGEST_SIZE + 1];
        Sha256 s;

        sha256(data, n, d);
        hex(d, text);
        ASSERT_STREQ(text, want);

        /* A byte at a time: the same, whatever the block boundaries. */
        sha256_init(&s);
        for (size_t i = 0; i < n; i++)
                sha256_update(&s, (const uint8_t *) data + i, 1);
        sha256_finish(&s, d);
        hex(d, text);
        ASSERT_STREQ(text, want);
}

TEST(fips_180_4_examples) {
        check("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        check("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        /* The 448-bit message: its padding takes a second block. */
        check("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
        check("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
              "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu", 112,
              "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST(one_million_a) {
        uint8_t d[SHA256_DIGEST_SIZE], chunk[1000];
        char text[2 * SHA256_DIGEST_SIZE + 1];
        char *a = malloc(1000000);
        Sha256 s;

        ASSERT_NOT_NULL(a);
        memset(a, 'a', 1000000);
        check(a, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
        free(a);

        /* In chunks that are no multiple of the block size. */
        memset(chunk, 'a', sizeof(chunk));
        sha256_init(&s);
        for (size_t done = 0; done < 1000000; done += 1000)
                sha256_update(&s, chunk, 1000);
        sha256_finish(&s, d);
        hex(d, text);
        ASSERT_STREQ(text, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(padding_edges) {
        static const struct {
                size_t n;
                const char *digest;
        } t[] = {
                { 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318" },
                { 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a" },
                { 63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34" },
                { 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb" },
                { 65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0" },
                { 119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb" },
                { 120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c" },
        };
        char a[128];

        memset(a, 'a', sizeof(a));
        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                check(a, t[i].n, t[i].digest);
}

TEST_MAIN();
