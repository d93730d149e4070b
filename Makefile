# The README's two commands. Each installs the Debian packages it is missing
# (once; quick when all are present), configures CMake into build/, builds,
# then runs the demo or the tests.
#   make demo   train the demo model (configs/tiny.ini) on the built-in corpus, on 4 ranks
#   make test   build, run every ctest, then the sanitizer build's unit tests

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell getconf _NPROCESSORS_ONLN)
DEMO_OUT   ?= runs/demo
DEMO_RANKS ?= 4

# What building and the demo need ...
DEMO_PACKAGES := cmake make gcc pkg-config libopenblas-openmp-dev libinih-dev libcjson-dev \
                 libcmocka-dev libopenmpi-dev openmpi-bin librocksdb-dev libzstd-dev libuv1-dev libcairo2-dev fortunes
# ... and what the tests add: Debian's PyTorch for the reference test, with
# OpenBLAS as the system BLAS (torch is 5-7x slower on the reference BLAS).
# clang and its runtime build the libFuzzer harness.
TEST_PACKAGES := $(DEMO_PACKAGES) python3-torch python3-numpy python3-venv libopenblas0-pthread clang \
                 libclang-rt-14-dev slurm-wlm munge

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

define install_missing
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
	  grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing missing packages:" $$missing; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

.PHONY: demo test deps-demo deps-test build clean

deps-demo:
	$(call install_missing,$(DEMO_PACKAGES))

deps-test:
	$(call install_missing,$(TEST_PACKAGES))

# -Wall -Wextra clean is enforced: warnings are errors in every build.
CMAKE_FLAGS := -DCMAKE_COMPILE_WARNING_AS_ERROR=ON

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

demo: deps-demo
	@$(MAKE) --no-print-directory build
	@echo "make demo: $(DEMO_OUT) is the demo's own folder; an earlier demo there is replaced (--overwrite)"
	./$(BUILD)/swiftmoe train --nproc $(DEMO_RANKS) --out $(DEMO_OUT) --overwrite \
	  --set training.sample_every=250

test: deps-test
	@$(MAKE) --no-print-directory build
	cd $(BUILD) && ctest --output-on-failure --no-tests=error -j $(JOBS)
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSMOE_SANITIZE=ON -DSMOE_CUDA=OFF $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure --no-tests=error -L unit -j $(JOBS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
