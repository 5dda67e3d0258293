# One command runs the main job, one passes the tests. Everything lives inside the project.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export RECSYS_HOME ?= $(CURDIR)/var
export AIRFLOW_HOME ?= $(RECSYS_HOME)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
# airflow standalone starts its components as `airflow ...` subprocesses
export PATH := $(CURDIR)/$(BIN):$(PATH)
DEMO_USERS ?= 5000
DEMO_ITEMS ?= 2000
UI_PORT ?= 8080
# a plain Linux box: TORCH_INDEX=https://download.pytorch.org/whl/cpu takes torch's CPU wheel
# (PyPI's Linux wheel is the multi-GB CUDA build); empty keeps pip's own indexes
TORCH_INDEX ?=
UI_HOST ?= 127.0.0.1
export UI_PORT UI_HOST

.PHONY: demo test test-unit ui lint venv clean

$(BIN)/recsys: requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(BIN)/pip install -q --index-url $(TORCH_INDEX) -c constraints.txt torch)
	$(BIN)/pip install -q -c constraints.txt -r requirements-dev.txt 2> >(grep -v "is ignored: it is neither" >&2)
	$(BIN)/pip install -q --no-deps -e . 2> >(grep -v "is ignored: it is neither" >&2)
	touch $@

venv: $(BIN)/recsys

demo: venv  ## seed synthetic data into embedded SQLite, run the nightly DAG, print what it produced
	$(BIN)/recsys demo-data --users $(DEMO_USERS) --items $(DEMO_ITEMS) --out "sqlite:///$(RECSYS_HOME)/recsys.db?table=interactions"
	$(BIN)/recsys run || [ $$? -eq 3 ]  # 3: the gate rejected tonight's candidate; readers keep the last run

test: venv  ## the whole test suite (needs PostgreSQL on 127.0.0.1:5432; .ci/run starts it)
	$(BIN)/python -m pytest -q

test-unit: venv  ## the fast tier: one layer at a time, no services (under a minute)
	$(BIN)/python -m pytest -q -m unit

lint: venv
	$(BIN)/ruff check .

ui: venv  ## Airflow UI on http://127.0.0.1:8080 (airflow standalone: SQLite + LocalExecutor, no login: everyone is admin)
	@exec scripts/ui

clean:
	rm -rf var
