# Two commands for a new user: `make run` and `make test`. Everything else builds on them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Development settings for manage.py and friends, written once (see analytics_site/settings.py).
ENV_FILE := $(or $(ENV_FILE),.env)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint bench worker beat install migrate reliability demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

$(ENV_FILE):
	printf '# Development settings, written once by make. Delete this file for production rules.\nDEBUG=1\n' > $@

install: $(STAMP) $(ENV_FILE)

migrate: install
	$(BIN)/python manage.py migrate --noinput

# Web server, Celery worker and Celery beat in the foreground; Ctrl-C stops all three.
run: export DEBUG ?= 1
run: migrate
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py ensure_dashboard_login
	$(BIN)/python -m analytics_site.supervise --host $(HOST) --port $(PORT)

# A month of realistic generated traffic (returning visitors included), aggregated, in the
# configured database: a dashboard with something to show.
demo: migrate
	$(BIN)/python manage.py generate_traffic --sessions 3000 --days 30 --seed 1 --demo-goals
	$(BIN)/python manage.py aggregate_visits

lint: install
	$(BIN)/ruff check .
	$(BIN)/python manage.py makemigrations --check --dry-run

test: export DEBUG = 1
test: lint
	$(BIN)/python -m pytest

worker: install
	$(BIN)/celery -A analytics_site worker --loglevel INFO --concurrency 2

beat: install
	$(BIN)/celery -A analytics_site beat --loglevel INFO

bench: install
	$(BIN)/python -m benchmarks

# Load, faults, and nothing lost: starts its own servers on 127.0.0.1 and prints a table.
reliability: install
	$(BIN)/python -m reliability
