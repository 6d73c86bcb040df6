# Two commands on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
# Each does its own setup (virtualenv, Python packages, system packages).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
SYSTEM_PACKAGES := xvfb xauth libgl1 libegl1 libdbus-1-3 libfontconfig1 libxkbcommon0 \
	libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 \
	libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 \
	libxcb-xkb1 libxrender1 libxi6
PYTEST_ARGS ?=

.PHONY: demo test venv system-deps lint clean-venv

# Debian/Ubuntu ship venv's ensurepip separately (python3-venv / python3.X-venv)
$(BIN)/python:
	@$(PYTHON) -c "import ensurepip" 2>/dev/null || { \
		v=$$($(PYTHON) -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")'); \
		echo "installing system packages: python3-venv python$$v-venv"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
			python3-venv "python$$v-venv" >/dev/null || \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned, so that pip takes the builds on this machine's disk instead of downloading.
# torchvision (needed by nnunetv2 -> dynamic-network-architectures -> timm) must match torch: 2.14.1/0.29.1.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH_SPEC) || $(BIN)/pip install --quiet "torch>=2.2,<2.15" torchvision
	$(BIN)/pip install --quiet -e ".[test]"
	# triton (pulled in by the CUDA build of torch, unused here: no torch.compile) segfaults on
	# import once Qt/OpenGL has loaded Mesa's LLVM, which kills napari when a checkpoint loads
	$(BIN)/pip uninstall --quiet -y triton 2>/dev/null || true
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# system-deps: the Qt libraries napari needs (libxcb-cursor0...); then this plugin becomes
# napari's reader of .nii/.nii.gz (napari setting plugins.extension2reader: no reader dialog)
demo: $(STAMP) system-deps
	$(BIN)/python -c "from inversion_audit.gui.reader import prefer_this_reader; prefer_this_reader()"
	$(BIN)/inversion-audit run configs/demo.toml --out demo-study

test: $(STAMP) system-deps
	QT_API=pyqt6 xvfb-run -a -s "-screen 0 1280x1024x24" $(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean-venv:
	rm -rf $(VENV)
