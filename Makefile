# The two commands of the README, and what they stand on.
#   make demo   install, then the zoo beside the paper, a training run and its evaluation
#   make test   install, then the whole test suite (pytest) and a Bazel smoke
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BAZEL ?= bazel

.PHONY: setup demo test bazel-test clean

setup: $(VENV)/.installed bazel-tools

# The project (editable) and its test tools, in .venv. Re-runs only when
# setup.py changes.
$(VENV)/.installed: setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable '.[test]'
	touch $@

# Bazel 4.2.3 and the rules_java it needs, from Debian, when missing and apt
# is usable (see WORKSPACE for how it runs offline).
.PHONY: bazel-tools
bazel-tools:
	@if command -v $(BAZEL) >/dev/null && [ -d /usr/share/bazel/rules/java ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "Installing Bazel (Debian's bazel-bootstrap) and bazel-rules-java"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq bazel-bootstrap bazel-rules-java >/dev/null; \
	else \
	  echo "note: Bazel or /usr/share/bazel/rules/java is missing and apt-get is not usable as root;"; \
	  echo "      install Debian's bazel-bootstrap and bazel-rules-java to use the Bazel targets."; \
	fi

# The main job end to end on the embedded data set (no network): the zoo
# beside the paper, then a CIFAR-family ResNet-20 trained on scikit-learn's
# handwritten digits, its evaluation from the checkpoint, its export as a
# SavedModel with TF Serving's classify signature, and held-out images
# classified through the TF-Serving-protocol gRPC server and client.
DEMO_DIR ?= /tmp/tf_resnet_demo
demo: setup
	$(BIN)/python -m tf_resnet.summary --zoo
	rm -rf $(DEMO_DIR)
	$(BIN)/python -m tf_resnet.train --dataset=digits --depth=20 \
	  --batch_size=64 --train_steps=300 --steps_per_loop=25 \
	  --eval_every_steps=100 --model_dir=$(DEMO_DIR)
	$(BIN)/python -m tf_resnet.evaluate --model_dir=$(DEMO_DIR)
	$(BIN)/python -m tf_resnet.export --model_dir=$(DEMO_DIR) \
	  --export_dir=$(DEMO_DIR)/export --top_k=3
	$(BIN)/saved_model_cli show --dir $(DEMO_DIR)/export/1 \
	  --tag_set serve --signature_def serving_default
	$(BIN)/python -m tf_resnet.demo --export_dir=$(DEMO_DIR)/export

# The Bazel smoke also trains ResNet-34 for two steps on tiny archives in
# ILSVRC2012's layout, which TFDS's real builder prepares: the README's
# ImageNet command as a Bazel user runs it (about a minute).
# pytest runs on TEST_JOBS processes (pytest-xdist), a test class per
# process so that a class's setUpClass runs once: most tests wait on a binary
# they started or on TensorFlow's import, so two processes on two cores halve
# the suite's time (36 to 17 minutes measured), and a third fills the cores
# while the others wait (fresh clone on the 2-core EPYC, 2026-12-07: pytest
# 14:54 with two, 12:47 with three). TEST_JOBS=0 runs it in one.
# The classes go out in pytest.ini's order (run_first: the longest first).
IMAGENET_SMOKE_DIR ?= /tmp/tf_resnet_imagenet_smoke
TEST_JOBS ?= 3
test: setup
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadscope --no-loadscope-reorder
	@if command -v $(BAZEL) >/dev/null; then \
	  set -ex; \
	  $(BAZEL) build //...; \
	  $(BAZEL) run //tf_resnet:summary -- --depth=34 --format=json; \
	  rm -rf $(IMAGENET_SMOKE_DIR); \
	  $(BIN)/python -c "from tf_resnet.testing import imagenet; \
	    imagenet.write_archives('$(IMAGENET_SMOKE_DIR)/data/downloads/manual')"; \
	  $(BAZEL) run //tf_resnet:train -- --depth=34 \
	    --data_dir=$(IMAGENET_SMOKE_DIR)/data \
	    --model_dir=$(IMAGENET_SMOKE_DIR)/run --batch_size=2 \
	    --train_steps=2 --steps_per_loop=1 --stats_max_images=12 \
	    --holdout=4; \
	  rm -rf $(IMAGENET_SMOKE_DIR); \
	else \
	  echo "note: no Bazel; skipped the Bazel smoke (bazel build //... and two bazel runs)"; \
	fi

# The same tests as pytest, under Bazel.
bazel-test: setup
	$(BAZEL) test //...

clean:
	-$(BAZEL) clean --expunge 2>/dev/null
	rm -rf $(VENV) *.egg-info
