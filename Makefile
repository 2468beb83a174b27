# loam: GNU Make build. `make` builds build/loam and build/libloam.a (+ .so);
# `make test` runs the suite; `make check` is what CI runs (see README).
# Local overrides go in config.mk (not committed). No autodetection: what is built is below.

-include config.mk

BUILD    ?= build
CC       ?= cc
AR       ?= ar
PREFIX   ?= /usr/local
ARCH     ?= $(shell $(CC) -dumpmachine | cut -d- -f1)
PKGS     := libcjson libpcre2-8 libutf8proc libmicrohttpd
SONAME_V := 0
VERSION  := 0.1.0

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN   := -Wall -Wextra -Wshadow -Wconversion -Wno-sign-conversion -Wstrict-prototypes \
          -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral
OPT    ?= -O2 -g
CFLAGS_ALL = -std=c11 $(OPT) $(WARN) $(WERROR) -fPIC -fvisibility=hidden -fopenmp \
          -DLOAM_BUILD $(CUDA_DEFS) -Iinclude -Isrc $(PKG_CFLAGS) $(SAN) $(EXTRA_CFLAGS)
LDLIBS_ALL = $(PKG_LIBS) $(CUDA_LIBS) -fopenmp -lm -lpthread $(SAN)

SRC      := $(sort $(wildcard src/*.c src/cpu/*.c src/arch/*.c src/server/*.c))
OBJ      := $(SRC:%.c=$(BUILD)/obj/%.o)

# CUDA: nvcc, sm_90 (H100/H200). `make CUDA=1` (best in its own BUILD folder) adds the CUDA
# backend (src/cuda/backend_cuda.c + src/cuda/*.cu, cudart linked statically) to the library and
# every program; LOAM_DEVICE=cuda or loam_model_params.device then runs sessions on the GPU.
CUDA      ?= 0
NVCC      ?= $(or $(shell command -v nvcc 2>/dev/null),/usr/local/cuda/bin/nvcc)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90
NVCCFLAGS  = -std=c++17 -O3 $(CUDA_ARCH) -Xcompiler -Wall,-Wextra,-fPIC -DLOAM_BUILD -Iinclude \
             -Isrc $(EXTRA_NVCCFLAGS)
CUDA_SRC  := $(sort $(wildcard src/cuda/*.cu))
CUDA_OBJ  := $(CUDA_SRC:%.cu=$(BUILD)/obj/%.o)
CUDA_HDR  := $(wildcard src/cuda/*.h src/cuda/*.cuh) src/quant.h src/loam_internal.h include/loam.h
ifeq ($(CUDA),1)
OBJ       += $(BUILD)/obj/src/cuda/backend_cuda.o $(CUDA_OBJ)
CUDA_DEFS := -DLOAM_CUDA
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcudart_static -ldl -lrt -lstdc++
endif
TOOL_SRC := $(sort $(wildcard tools/*.c))
TOOL_OBJ := $(TOOL_SRC:%.c=$(BUILD)/obj/%.o)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(sort $(wildcard bench/bench_*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

# Per-file instruction sets: one ISA per file, never global (STYLE.md).
ifeq ($(ARCH),x86_64)
ISA_avx2   := -mavx2 -mfma -mf16c
ISA_avx512 := -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512dq -mfma -mf16c
endif
ifeq ($(ARCH),aarch64)
ISA_neon   := -march=armv8.2-a+dotprod
endif
$(BUILD)/obj/src/cpu/avx2.o:   EXTRA_ISA = $(ISA_avx2)
$(BUILD)/obj/src/cpu/avx512.o: EXTRA_ISA = $(ISA_avx512)
$(BUILD)/obj/src/cpu/attention_avx2.o:   EXTRA_ISA = $(ISA_avx2)
$(BUILD)/obj/src/cpu/attention_avx512.o: EXTRA_ISA = $(ISA_avx512)
$(BUILD)/obj/src/cpu/neon.o:   EXTRA_ISA = $(ISA_neon)

.PHONY: all lib test check asan ubsan tsan fuzz fuzz-targets fuzz-smoke bench cuda cuda-test install clean fmt deps run examples
all: $(BUILD)/loam $(BUILD)/libloam.a $(BUILD)/libloam.so $(TEST_BIN) $(BUILD)/tests/tiny-model

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS_ALL) $(EXTRA_ISA) -MMD -MP -c $< -o $@

$(BUILD)/libloam.a: $(OBJ)
	@mkdir -p $(dir $@)
	@echo "  AR      $@"
	@rm -f $@ && $(AR) rcs $@ $^

$(BUILD)/libloam.so: $(OBJ)
	@echo "  LD      $@"
	@$(CC) -shared -Wl,-soname,libloam.so.$(SONAME_V) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/loam: $(TOOL_OBJ) $(BUILD)/libloam.a
	@echo "  LD      $@"
	@$(CC) -o $@ $(TOOL_OBJ) $(BUILD)/libloam.a $(LDLIBS_ALL)

$(BUILD)/tests/%: tests/%.c tests/test.h $(BUILD)/libloam.a
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	@$(CC) $(CFLAGS_ALL) -UNDEBUG -DLOAM_TEST_DIR='"$(CURDIR)/tests"' -o $@ $< $(BUILD)/libloam.a $(LDLIBS_ALL)

# The CUDA backend's test against the transformers fixtures: needs CUDA=1 and a GPU to run; run
# it from the repository root (it reads tests/data/models).
cuda-test: $(BUILD)/tests/cuda/test_backend_cuda
$(BUILD)/tests/cuda/test_backend_cuda: tests/cuda/test_backend_cuda.c tests/test.h $(BUILD)/libloam.a
	@$(if $(filter 1,$(CUDA)),,echo "cuda-test: build with make CUDA=1" && exit 1)
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	@$(CC) $(CFLAGS_ALL) -UNDEBUG -DLOAM_TEST_DIR='"tests"' -o $@ $< $(BUILD)/libloam.a $(LDLIBS_ALL)

$(BUILD)/tests/tiny-model: tests/tiny_model.c tests/tiny_model.h $(BUILD)/libloam.a
	@mkdir -p $(dir $@)
	@echo "  TOOL    $@"
	@$(CC) $(CFLAGS_ALL) -o $@ $< $(BUILD)/libloam.a $(LDLIBS_ALL)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libloam.a
	@mkdir -p $(dir $@)
	@echo "  BENCH   $@"
	@$(CC) $(CFLAGS_ALL) -o $@ $< $(BUILD)/libloam.a $(LDLIBS_ALL)

# Kernel benchmarks (bench/bench_*.c): build and run each; figures go to bench/RESULTS.md.
bench: $(BENCH_BIN)
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b || exit 1; done

# CUDA (`make cuda`, never part of all/test; CI compiles it through tools/check.d/cuda-build.sh):
# the objects of src/cuda/ and the kernel lab bench/bench_matmul_q4.cu, which links only the two
# C files of the library it needs (status, quantization reference). The CUDA backend itself is
# in the library only with `make CUDA=1` (see the top of this file).
cuda: $(CUDA_OBJ) $(BUILD)/bench/bench_matmul_q4

$(BUILD)/obj/%.o: %.cu $(CUDA_HDR)
	@mkdir -p $(dir $@)
	@echo "  NVCC    $<"
	@$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/bench/bench_matmul_q4: bench/bench_matmul_q4.cu $(CUDA_SRC) $(CUDA_HDR) \
                                $(BUILD)/obj/src/status.o $(BUILD)/obj/src/quant_ref.o
	@mkdir -p $(dir $@)
	@echo "  NVCC    $@"
	@$(NVCC) $(NVCCFLAGS) -o $@ $< $(BUILD)/obj/src/status.o $(BUILD)/obj/src/quant_ref.o -lm

test: all
	@tests/run.sh $(BUILD)

# Sanitizer builds run the same suite in their own build folders.
asan:
	$(MAKE) BUILD=build-asan SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" OPT="-O1 -g" test
tsan:
	$(MAKE) BUILD=build-tsan SAN="-fsanitize=thread" OPT="-O1 -g" test

# Fuzz targets: every fuzz/fuzz_*.c, a libFuzzer program built with clang, ASan and UBSan against
# a library compiled the same way in its own build folder. tools/check.d/fuzz.sh runs them.
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%)
fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang OPT="-O1 -g" \
	    SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    fuzz-targets
fuzz-targets: $(FUZZ_BIN)
$(BUILD)/fuzz/%: fuzz/%.c $(BUILD)/libloam.a
	@mkdir -p $(dir $@)
	@echo "  FUZZ    $@"
	@$(CC) $(CFLAGS_ALL) -fsanitize=fuzzer -o $@ $< $(BUILD)/libloam.a $(LDLIBS_ALL)
fuzz-smoke:
	@tools/check.d/fuzz.sh

# Everything CI runs: warnings are errors, the suite, the sanitizer suite, the fuzz smoke run.
check:
	@tools/check.sh

deps:
	@tools/deps.sh

run: all
	@tools/run-main.sh $(BUILD)

install: $(BUILD)/libloam.a $(BUILD)/libloam.so
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 $(BUILD)/libloam.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libloam.so $(DESTDIR)$(PREFIX)/lib/libloam.so.$(VERSION)
	ln -sf libloam.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libloam.so.$(SONAME_V)
	ln -sf libloam.so.$(SONAME_V) $(DESTDIR)$(PREFIX)/lib/libloam.so
	install -m 644 include/loam.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|@REQUIRES@|$(PKGS)|g' \
	    -e 's|@CUDA_LIBS@|$(CUDA_LIBS)|g' loam.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/loam.pc

fmt:
	clang-format --dry-run --Werror include/*.h $(SRC) $(TOOL_SRC)

clean:
	rm -rf build build-*

-include $(OBJ:.o=.d) $(TOOL_OBJ:.o=.d)
