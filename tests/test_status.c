/* test_status.c: status table, error filling, heap accounting and fault injection, dtype
 * table, half-precision conversions, atomic file writes. */
#include "../src/loam_internal.h"
#include "test.h"

#include <unistd.h>

static void test_status_strings(void) {
    CHECK_STR(loam_status_str(LOAM_OK), "ok");
    CHECK_STR(loam_status_str(LOAM_E_FORMAT), "malformed model, adapter or tokenizer file");
    CHECK_STR(loam_status_str((loam_status)9999), "unknown status");
    loam_err e;
    CHECK_EQ_I64(loam__fail(&e, LOAM_E_IO, "file %s: %d", "x.bin", 7), LOAM_E_IO);
    CHECK_EQ_I64(e.code, LOAM_E_IO);
    CHECK_STR(e.msg, "file x.bin: 7");
    CHECK_EQ_I64(loam__fail(NULL, LOAM_E_NOMEM, "ignored"), LOAM_E_NOMEM);
}

static void test_alloc_accounting(void) {
    uint64_t base = loam_debug_bytes_in_use();
    char *p = loam__malloc(100);
    CHECK(p != NULL);
    CHECK_EQ_I64(loam_debug_bytes_in_use() - base, 100);
    p = loam__realloc(p, 300);
    CHECK(p != NULL);
    CHECK_EQ_I64(loam_debug_bytes_in_use() - base, 300);
    void *a = loam__aligned_alloc(64, 1000);
    CHECK(a != NULL && ((uintptr_t)a % 64) == 0);
    CHECK_EQ_I64(loam_debug_bytes_in_use() - base, 1300);
    loam__free(a);
    loam__free(p);
    loam__free(NULL);
    CHECK_EQ_I64(loam_debug_bytes_in_use(), base);
}

static void test_fault_injection(void) {
    loam_debug_fail_alloc_after(2);
    void *a = loam__malloc(8);
    void *b = loam__malloc(8);
    void *c = loam__calloc(2, 8);
    CHECK(a != NULL);
    CHECK(b == NULL);
    CHECK(c == NULL);
    loam_debug_fail_alloc_after(0);
    void *d = loam__malloc(8);
    CHECK(d != NULL);
    loam__free(a);
    loam__free(d);
    CHECK(loam__calloc(SIZE_MAX / 2, 4) == NULL);
}

static void test_dtypes(void) {
    CHECK_EQ_I64(loam_dtype_from_name("BF16", 4), LOAM_DTYPE_BF16);
    CHECK_EQ_I64(loam_dtype_from_name("bf16", 4), LOAM_DTYPE_INVALID);
    CHECK_EQ_I64(loam_dtype_from_name("F8_E4M3FNUZ", 11), LOAM_DTYPE_F8_E4M3FNUZ);
    CHECK_EQ_I64(loam_dtype_bits(LOAM_DTYPE_F4), 4);
    CHECK_EQ_I64(loam_dtype_bits(LOAM_DTYPE_F6_E2M3), 6);
    CHECK_EQ_I64(loam_dtype_bits(LOAM_DTYPE_C64), 64);
    CHECK(loam_dtype_name(LOAM_DTYPE_INVALID) == NULL);
    for (int t = 1; t < LOAM_DTYPE_COUNT; t++) {
        const char *n = loam_dtype_name((loam_dtype)t);
        CHECK(n != NULL);
        if (n) CHECK_EQ_I64(loam_dtype_from_name(n, strlen(n)), t);
    }
}

static void test_half(void) {
    /* bf16: round to nearest even on the dropped 16 bits */
    CHECK_EQ_I64(loam__f32_to_bf16(1.0f), 0x3f80);
    CHECK_CLOSE(loam__bf16_to_f32(0x3f80), 1.0, 0);
    CHECK_EQ_I64(loam__f32_to_bf16(-2.5f), 0xc020);
    uint32_t u = 0x3f808000u; /* exactly halfway between 0x3f80 and 0x3f81 -> even 0x3f80 */
    float f;
    memcpy(&f, &u, 4);
    CHECK_EQ_I64(loam__f32_to_bf16(f), 0x3f80);
    u = 0x3f818000u; /* halfway, odd below -> up */
    memcpy(&f, &u, 4);
    CHECK_EQ_I64(loam__f32_to_bf16(f), 0x3f82);
    CHECK(isnan(loam__bf16_to_f32(loam__f32_to_bf16(NAN))));
    /* f16 round trip of every finite half value */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        if (((h >> 10) & 0x1f) == 0x1f) continue;
        float x = loam__f16_to_f32((uint16_t)h);
        if (loam__f32_to_f16(x) != h) bad++;
    }
    CHECK_EQ_I64(bad, 0);
    CHECK_CLOSE(loam__f16_to_f32(0x3c00), 1.0, 0);
    CHECK_CLOSE(loam__f16_to_f32(0x0001), 5.960464477539063e-08, 1e-20);
    CHECK_EQ_I64(loam__f32_to_f16(65504.0f), 0x7bff);
    CHECK_EQ_I64(loam__f32_to_f16(70000.0f), 0x7c00);
    CHECK_EQ_I64(loam__f32_to_f16(1.0f + 1.0f / 2048.0f), 0x3c00); /* tie -> even */
}

static void test_atomic_write(void) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/loam_test_status_%ld.txt", (long)getpid());
    loam_err e = {0};
    CHECK_OK(loam__write_file_atomic(path, "hello", 5, &e), e);
    char *buf = NULL;
    size_t n = 0;
    CHECK_OK(loam__read_file(path, &buf, &n, &e), e);
    CHECK_EQ_I64(n, 5);
    CHECK_STR(buf, "hello");
    loam__free(buf);
    unlink(path);
    CHECK_EQ_I64(loam__read_file(path, &buf, &n, &e), LOAM_E_IO);
    CHECK(strstr(e.msg, path) != NULL);
    CHECK_EQ_I64(loam__write_file_atomic("/nonexistent-dir/x", "a", 1, &e), LOAM_E_IO);
}

static void run_tests(void) {
    TEST(test_status_strings);
    TEST(test_alloc_accounting);
    TEST(test_fault_injection);
    TEST(test_dtypes);
    TEST(test_half);
    TEST(test_atomic_write);
}
