# mambagrad: a plain Makefile with named targets.
#
#   make              the library and the `mambagrad` program (build/mambagrad)
#   make test         build and run the whole test suite (CUDA cases run when a GPU is present)
#   make test SANITIZE=1   the CPU suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz         build the libFuzzer targets of fuzz/ (clang++, ASan + UBSan, build/fuzz) and
#                     run each for FUZZ_SECONDS (default 60); see README "Reliability"
#   make gpu-check    the CUDA suite under compute-sanitizer's four tools (GPU machine)
#   make results      docs/RESULTS.md from the experiments' committed result rows
#   make reproduce-mini   experiments 1 and 3 in miniature on the CPU (about 9 minutes)
#   make train        train a small Mamba on Standard MQAR, then score Standard, Last and Shuffle
#   make compare      the Mamba and the Transformer of the same size on Standard MQAR, their
#                     Standard / Last / Shuffle accuracy side by side (tools/compare.sh)
#   make corpus       the LM corpus data/corpus/kjv.txt (the King James Bible, public domain) from
#                     Debian's bible-kjv-text (installs bible-kjv with apt-get when run as root)
#   make vendor       copy the header-only dependencies into third_party/ (ignored by git) so the
#                     tree builds on a machine with no package manager (the GPU machine)
#   make clean
#
# Options: CUDA=0|1 (default: 1 when nvcc is on PATH), SANITIZE=1 (implies CUDA=0), OPENBLAS=0|1
# (default: 1 when its headers are installed), DEBUG=1, CUDA_ARCH=90.

NVCC_PATH := $(shell command -v nvcc 2>/dev/null)
CUDA ?= $(if $(NVCC_PATH),1,0)
SANITIZE ?= 0
FUZZ ?= 0
ifneq ($(filter 1,$(SANITIZE) $(FUZZ)),)
  CUDA := 0
endif
DEBUG ?= 0
CUDA_ARCH ?= 90

# ---- where things go: one build folder per configuration, so switching never mixes objects ---
BUILD := build
ifeq ($(FUZZ),1)
  BUILD := build/fuzz
else ifeq ($(SANITIZE),1)
  BUILD := build/san
else ifeq ($(CUDA),0)
  BUILD := build/cpu
endif

# ---- dependencies (Debian packages, header-only use) -------------------------------------------
# Looked up in third_party/include (filled by `make vendor`) first, then the system.
DEP_HEADERS := fmt/format.h:libfmt-dev catch2/catch.hpp:catch2 CLI/CLI.hpp:libcli11-dev nlohmann/json.hpp:nlohmann-json3-dev
have_header = $(or $(wildcard third_party/include/$(1)),$(wildcard /usr/include/$(1)))
MISSING_PKGS := $(strip $(foreach d,$(DEP_HEADERS),$(if $(call have_header,$(word 1,$(subst :, ,$(d)))),,$(word 2,$(subst :, ,$(d))))))
ifneq ($(MISSING_PKGS),)
  ifeq ($(shell id -u),0)
    $(info mambagrad: installing missing Debian packages: $(MISSING_PKGS))
    INSTALL_OUT := $(shell (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(MISSING_PKGS)) >/dev/null 2>&1 && echo ok)
    ifneq ($(INSTALL_OUT),ok)
      $(error missing dependency: apt-get could not install $(MISSING_PKGS); install them (apt-get install $(MISSING_PKGS)) or copy their headers with `make vendor` on a machine that has them)
    endif
  else
    $(error missing dependency: install the Debian package(s) $(MISSING_PKGS) (sudo apt-get install $(MISSING_PKGS)))
  endif
endif
# OpenBLAS (CPU GEMM) is optional: installed like the others when run as root (unless OPENBLAS=0),
# else the build says so once and uses mambagrad's blocked GEMM (`mambagrad info` shows which).
find_openblas = $(firstword $(wildcard /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/openblas /usr/include/aarch64-linux-gnu/openblas-pthread))
OPENBLAS_INC := $(find_openblas)
ifeq ($(OPENBLAS_INC)$(filter 0,$(OPENBLAS)),)
  ifeq ($(shell id -u)$(if $(shell command -v apt-get 2>/dev/null),,none),0)
    $(info mambagrad: installing missing Debian package: libopenblas-dev)
    BLAS_OUT := $(shell (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev) >/dev/null 2>&1 && echo ok)
    OPENBLAS_INC := $(find_openblas)
  endif
  ifeq ($(OPENBLAS_INC),)
    $(info mambagrad: OpenBLAS not found (Debian package libopenblas-dev): the CPU GEMM is mambagrad's blocked kernel)
  endif
endif
OPENBLAS ?= $(if $(OPENBLAS_INC),1,0)

# ---- flags -------------------------------------------------------------------------------------
CXX ?= g++
OPT := $(if $(filter 1,$(DEBUG)),-O0 -g,-O2 -g)
CPPFLAGS := -I. -isystem third_party/include -DFMT_HEADER_ONLY
# -fno-trapping-math: we never enable floating-point traps, and it lets GCC if-convert float
# selects so the CPU kernels' `omp simd` loops vectorise (e.g. the clamps in vm::exp2_decay).
CXXFLAGS := -std=c++20 $(OPT) -Wall -Wextra -fopenmp -fno-trapping-math -MMD -MP
LDFLAGS := -fopenmp
LDLIBS := -ldl
ifeq ($(SANITIZE),1)
  CXXFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif
# The fuzz build: clang's libFuzzer needs clang (Debian: clang, libclang-rt-14-dev, libomp-dev); the
# library gets coverage instrumentation, the targets link libFuzzer's main.
ifeq ($(FUZZ),1)
  CXX := clang++
  OPT := -O1 -g
  CXXFLAGS := -std=c++20 $(OPT) -Wall -Wextra -fopenmp -fno-trapping-math -MMD -MP \
              -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined \
              -Wno-pass-failed
  LDFLAGS += -fsanitize=address,undefined
endif
ifeq ($(OPENBLAS),1)
  CPPFLAGS += -DMG_OPENBLAS -I$(OPENBLAS_INC)
  LDLIBS += -lopenblas
endif

NVCC := nvcc
CUDA_HOME := $(if $(NVCC_PATH),$(abspath $(dir $(NVCC_PATH))/..),/usr/local/cuda)
# sm_90 machine code (H100/H200) plus compute_80 PTX that the driver compiles for other GPUs.
NVCC_GENCODE := -gencode arch=compute_$(CUDA_ARCH),code=sm_$(CUDA_ARCH) -gencode arch=compute_80,code=compute_80
NVCCFLAGS := -std=c++20 $(OPT) $(NVCC_GENCODE) -Xcompiler -Wall,-Wextra --expt-relaxed-constexpr -MMD -MP
ifeq ($(CUDA),1)
  CPPFLAGS += -DMG_CUDA -isystem $(CUDA_HOME)/include
  LDFLAGS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64
  LDLIBS += -lcublas -lcufft -lcudart
endif

# ---- sources -----------------------------------------------------------------------------------
LIB_CPP := $(wildcard tensor/*.cpp autograd/*.cpp ops/*.cpp data/*.cpp nn/*.cpp)
LIB_CPP += $(filter-out train/cli.cpp,$(wildcard train/*.cpp))
ifeq ($(CUDA),1)
  LIB_CU := $(wildcard cuda/*.cu)
else
  LIB_CPP += cuda/runtime_none.cpp
  LIB_CU :=
endif
LIB_OBJ := $(LIB_CPP:%.cpp=$(BUILD)/%.o) $(LIB_CU:%.cu=$(BUILD)/%.o)
LIB := $(BUILD)/libmambagrad.a
CLI_OBJ := $(BUILD)/train/cli.o
BIN := $(BUILD)/mambagrad
TEST_OBJ := $(patsubst %.cpp,$(BUILD)/%.o,$(wildcard tests/*.cpp))
TEST_BIN := $(BUILD)/mg_tests
BENCH_OBJ := $(BUILD)/bench/bench_ops.o
BENCH_BIN := $(BUILD)/bench_ops
STEP_BIN := $(BUILD)/bench_step
LAB_BIN := $(BUILD)/fft_lab
SCAN_LAB_BIN := $(BUILD)/scan_lab

.PHONY: FORCE all test vendor clean bench lab train compare corpus check-layers fuzz fuzz-build fuzz-run gpu-check results reproduce-mini
all: $(LIB) $(BIN)

$(BUILD)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(CPPFLAGS) $(NVCCFLAGS) -c $< -o $@

# The commit the build compiles (train/build_info.h), recorded in result rows: a stamp file that
# changes only when the commit (or its dirty flag) does, so only build_info.o recompiles.
GIT_COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD -- 2>/dev/null || echo +dirty)
$(BUILD)/commit.stamp: FORCE
	@mkdir -p $(dir $@)
	@echo '$(GIT_COMMIT)' | cmp -s - $@ || echo '$(GIT_COMMIT)' > $@
$(BUILD)/train/build_info.o: $(BUILD)/commit.stamp
$(BUILD)/train/build_info.o: CPPFLAGS += -DMG_COMMIT='"$(GIT_COMMIT)"'
FORCE:

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIB)
	$(CXX) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(TEST_BIN): $(TEST_OBJ) $(LIB)
	$(CXX) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BENCH_BIN): $(BENCH_OBJ) $(LIB)
	$(CXX) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(STEP_BIN): $(BUILD)/bench/bench_step.o $(LIB)
	$(CXX) $(LDFLAGS) $^ $(LDLIBS) -o $@

# Benchmarks run on the GPU machine: bench/bench_ops.py times PyTorch beside build/bench_ops;
# build/bench_step splits a training step's time by phase and by backward node.
bench: $(BENCH_BIN) $(STEP_BIN)

# The kernel labs (STYLE.md #11; GPU only): bench/fft_lab.cu, the fused FFT long conv's launch
# configurations, and bench/scan_lab.cu, the selective scan's numbered versions; each checked
# against a double reference and timed side by side.
$(LAB_BIN): $(BUILD)/bench/fft_lab.o $(LIB)
	$(CXX) $(LDFLAGS) $^ $(LDLIBS) -o $@
$(SCAN_LAB_BIN): $(BUILD)/bench/scan_lab.o $(LIB)
	$(CXX) $(LDFLAGS) $^ $(LDLIBS) -o $@
lab: $(LAB_BIN) $(SCAN_LAB_BIN)

# The suite prints one line `N passed, N failed` last (tests/main.cpp counts test cases).
# TEST_ARGS passes Catch2 arguments, e.g. make test TEST_ARGS='[matmul]'.
# With CUDA, the suite's build also compiles the kernel labs, so they keep building (they run only
# on a GPU: `make lab`).
test: check-layers $(TEST_BIN) $(BIN) $(if $(filter 1,$(CUDA)),$(LAB_BIN) $(SCAN_LAB_BIN))
	$(if $(filter 1,$(SANITIZE)),ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1) ./$(TEST_BIN) $(TEST_ARGS)

# The dependency rule of docs/ARCHITECTURE.md: no folder includes one above it (the script's self-test
# first proves it catches a planted violation).
check-layers:
	@tools/check_layers.sh --self-test
	@tools/check_layers.sh

# `mambagrad train` with its defaults (train/trainer.h): a small Mamba on Standard MQAR (minutes on
# 2 CPU cores; the GPU when present), then the test table of Standard, Last and Shuffle, which
# shows the positional shortcut. TRAIN_ARGS adds options, e.g. make train TRAIN_ARGS='--device cpu'.
# Idle OpenMP threads spin for a short while (libgomp's GOMP_SPINCOUNT, 20000 unless set) and then
# sleep: libgomp's default spin (300000) made training 5x slower on a busy machine, and sleeping
# at once (OMP_WAIT_POLICY=passive) made a CPU step ~20% slower, waking the threads through futex
# calls between the ops' parallel loops (~8% of the step in perf; bench/RESULTS.md).
train: $(BIN)
	GOMP_SPINCOUNT=$${GOMP_SPINCOUNT:-20000} ./$(BIN) train $(TRAIN_ARGS)

compare: $(BIN)
	BIN=./$(BIN) tools/compare.sh

# The LM corpus (train/trainer.h "Language modelling"; configs/lm_kjv.json): data/prepare_kjv.sh
# prints the Bible with bible-kjv's `bible` program and keeps one verse per line. The file is
# ignored by git; the GPU machine has no package manager: prepare it here and carry data/corpus.
CORPUS := data/corpus/kjv.txt
corpus: $(CORPUS)
$(CORPUS): data/prepare_kjv.sh
	@if ! command -v bible >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "mambagrad: installing Debian packages: bible-kjv bible-kjv-text"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bible-kjv bible-kjv-text) >/dev/null 2>&1 \
	      || { echo "missing dependency: apt-get could not install bible-kjv bible-kjv-text" >&2; exit 1; }; \
	  else \
	    echo "missing dependency: install the Debian packages bible-kjv bible-kjv-text (sudo apt-get install bible-kjv bible-kjv-text)" >&2; exit 1; \
	  fi; \
	fi
	sh data/prepare_kjv.sh $@

# ---- fuzzing (issue "Reliability"): one libFuzzer target per reader of outside files; fuzz/corpus/<t>/
# holds each one's committed seeds, build/fuzz/corpus/<t>/ what a run found beyond them, and
# build/fuzz/findings/<t>/ the input of any crash, leak, sanitizer report, hang or unclean error.
FUZZ_TARGETS := safetensors config metadata jsonl corpus
FUZZ_SECONDS ?= 60
FUZZ_BINS := $(FUZZ_TARGETS:%=$(BUILD)/fuzz_%)
$(BUILD)/fuzz_%: $(BUILD)/fuzz/%.o $(LIB)
	$(CXX) $(LDFLAGS) -fsanitize=fuzzer $^ $(LDLIBS) -o $@
fuzz-build: $(FUZZ_BINS)
fuzz-run: $(FUZZ_BINS)
	tools/fuzz.sh $(BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)
fuzz:
	$(MAKE) FUZZ=1 fuzz-run

# ---- experiments (experiments/README.md) -------------------------------------------------------
# docs/RESULTS.md from the committed result rows of every experiment (a test keeps it current).
results: $(BIN)
	./$(BIN) report $(sort $(wildcard experiments/*.json)) --out docs/RESULTS.md
# Experiments 1 and 3 in miniature on the CPU (about 9 minutes on 2 cores); runs and rows go to
# $(BUILD)/reproduce-mini/ (delete it to run them again).
MINI := experiments/mini/positional.json experiments/mini/k4v8.json
reproduce-mini: $(BIN)
	@for e in $(MINI); do ./$(BIN) sweep $$e --runs $(BUILD)/reproduce-mini/runs \
	    --results $(BUILD)/reproduce-mini/results || exit 1; done
	@echo; ./$(BIN) report $(MINI) --results $(BUILD)/reproduce-mini/results

# The CUDA suite under compute-sanitizer memcheck, racecheck, initcheck and synccheck (GPU machine).
gpu-check: $(TEST_BIN)
	tools/gpu_check.sh $(TEST_BIN) $(BUILD)/gpu-check

vendor:
	@mkdir -p third_party/include
	cp -r /usr/include/fmt /usr/include/catch2 /usr/include/CLI /usr/include/nlohmann third_party/include/
	@echo "header-only dependencies copied to third_party/include (carry it to the GPU machine)"

clean:
	rm -rf build

# Every object's dependency file, the labs' and bench_step's included: a header or .inc change must
# rebuild each object that includes it (a stale lab object once hid a renamed helper from local builds).
-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BENCH_OBJ:.o=.d) \
         $(addprefix $(BUILD)/bench/,bench_step.d fft_lab.d scan_lab.d) $(FUZZ_TARGETS:%=$(BUILD)/fuzz/%.d)
