# The only way anyone (README, CI, you) runs things. Every target installs what it needs first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Develop on the Lambda's Python line when this machine has it (pyenv's 3.12), else python3 (≥ 3.11).
PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3))
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
CDK := node_modules/.bin/cdk
STAGE ?= dev
# The Lambda runtime the layer is built for (infra/function.py uses the same).
LAMBDA_PYTHON := 3.12
LAMBDA_PLATFORM := aarch64-manylinux2014

export UV_PYTHON_DOWNLOADS := never
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export AWS_REGION ?= us-east-1

.PHONY: help install demo serve test lint unit synth cfn-lint deploy bench layer openapi clean

help:
	@echo "make demo    install, start the local stack, play the demo scenario, print counters"
	@echo "make test    install, lint, every test, synth with cdk-nag, cfn-lint"
	@echo "make serve   the local stack, kept up for your own requests"
	@echo "make synth   synthesize the CloudFormation template (offline)"
	@echo "make deploy  cdk deploy (STAGE=$(STAGE); see README for context values)"
	@echo "make bench   benchmarks: write units, engine, cold init, delivery, backtest (10k accounts)"

install: $(VENV)/.installed node_modules/.installed

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Runtime dependencies for the Lambda layer, for the Lambda's Python and CPU, without Docker.
layer: build/.layer-built
build/.layer-built: $(VENV)/.installed uv.lock infra/bytecode.py
	rm -rf build/layer && mkdir -p build/layer
	$(UV) export --frozen --no-dev --no-emit-project --no-hashes --no-header --quiet > build/layer-requirements.txt
	$(UV) pip install --quiet --target build/layer/python --python-version $(LAMBDA_PYTHON) \
		--python-platform $(LAMBDA_PLATFORM) --only-binary :all: -r build/layer-requirements.txt
	$(BIN)/python -m infra.bytecode build/layer/python
	touch $@

demo: install
	$(BIN)/upswing local --port 0

serve: install
	$(BIN)/upswing local --serve

test: install lint unit synth cfn-lint

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: install
	$(BIN)/pytest

synth: install layer
	$(CDK) synth --quiet --context stage=$(STAGE) > /dev/null
	@echo "synth: cdk-nag AwsSolutions clean (see cdk.out/)"

cfn-lint: synth
	$(BIN)/cfn-lint cdk.out/*.template.json

# Recorded with each ruleset version the deploy runs (GET /v1/rulesets); the synth never calls git.
DEPLOYER ?= $(USER)
GIT_REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)

deploy: install layer
	$(CDK) deploy --context stage=$(STAGE) $(if $(DEPLOYER),--context deployer=$(DEPLOYER)) \
		$(if $(GIT_REVISION),--context git_revision=$(GIT_REVISION)) $(CDK_ARGS)

bench: install layer
	$(BIN)/python -m bench

openapi: install
	$(BIN)/upswing openapi --out docs/openapi.json

clean:
	rm -rf build cdk.out .pytest_cache .mypy_cache .ruff_cache
