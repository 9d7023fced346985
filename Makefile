# The two commands of the README: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo
# Extra pip arguments for torch: where pip finds no CPU wheel of its own (this machine's wheel
# cache has one), `make TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cpu'`
# keeps PyPI's multi-GB CUDA build out.
TORCH_PIP_ARGS ?=

export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export PREFECT_LOGGING_LEVEL ?= WARNING
export LOGURU_LEVEL := WARNING
export TOTALSEG_DISABLE_HTTP := 1

.PHONY: install demo test bench clean

install: $(VENV)/.installed

# The install step fixes the three run-time breakages of ../shared/ENVIRONMENT.md:
# 1. the `argparse` backport (via batchgenerators -> unittest2) shadows the stdlib in Prefect's server;
# 2. PyPI's torchvision does not match the CPU torch; ctcorpus registers the nnU-Net trainers it needs,
#    so torchvision is removed;
# 3. spaCy is pinned to 3.8.x (built for numpy 2), medspacy is not used.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0 $(TORCH_PIP_ARGS)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/pip uninstall --quiet -y argparse torchvision
	touch $@

demo: install
	$(BIN)/ctcorpus demo $(DEMO_DIR)

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The CPU benchmarks; bench/train_gpu.sh is for a GPU machine, bench/render_audit.py needs chromium.
bench: install
	for b in ingest reports snippets anatomy audit outputs; do $(BIN)/python bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_DIR) .prefect
