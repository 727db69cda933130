# AICMO Campaign Engine. `make demo` and `make test` set up everything they need themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum requirements.txt | cut -c1-12)
# Test runs on PostgreSQL use this server; pytest-django creates (and drops) test_<name>.
PG_URL ?= postgres://postgres@127.0.0.1:5432/aicmo
PYTEST_ARGS ?=
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Bytecode goes under var/ (ignored), not beside the sources: every `manage.py` a test starts
# reads it instead of compiling the project again.
export PYTHONPYCACHEPREFIX := $(CURDIR)/var/pycache

.PHONY: help venv system-deps system-deps-report lint format test test-sqlite test-postgres postgres-up demo serve bench clean

help:
	@echo "make demo   - set up, migrate and run the demo campaign end to end (proof mode)"
	@echo "make test   - set up, lint, and run the whole suite on SQLite and on PostgreSQL"
	@echo "make serve  - run the admin (http://127.0.0.1:8000/admin/) and a django-q2 cluster"

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

# WeasyPrint (the PDF report) loads Debian's Pango and HarfBuzz libraries and lays text out in
# DejaVu Sans; the demo writes a PDF, so it needs these and nothing more.
REPORT_DEBS := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core
# Installs the named Debian packages that are not installed yet (one apt-get for all of them).
define apt_install_missing
	@missing=$$(for p in $(1); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian's" $$missing "for $(2)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

system-deps-report:
	$(call apt_install_missing,$(REPORT_DEBS),the PDF report)

# Debian's Chromium drives the admin in browser tests; nothing downloads a browser. Debian's
# Dovecot is the IMAP server of the poller's tests (they start their own; no system service).
# Poppler's pdftoppm and pdftotext read the PDF report back in its tests.
system-deps: system-deps-report
	$(call apt_install_missing,poppler-utils,the PDF report's tests)
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@test -x /usr/sbin/dovecot || command -v dovecot >/dev/null 2>&1 || { \
		echo "Installing Debian's dovecot-imapd for the IMAP tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null; }

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

postgres-up:
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
		echo "Starting PostgreSQL"; \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
		for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }

test-sqlite: venv system-deps
	@echo "=== Test suite on SQLite"
	env -u DATABASE_URL $(BIN)/pytest $(PYTEST_ARGS)

test-postgres: venv system-deps postgres-up
	@echo "=== Test suite on PostgreSQL ($(PG_URL))"
	DATABASE_URL=$(PG_URL) $(BIN)/pytest $(PYTEST_ARGS)

# The two suites run at once on their own databases (SQLite in memory, test_aicmo on the server):
# most of their time is one Python process each, and the machine has two cores. The set-up runs
# first, once, so two apt-gets never meet; each suite's output is printed whole when it ends.
test: lint system-deps postgres-up
	$(MAKE) --no-print-directory -j2 --output-sync=target test-sqlite test-postgres

demo: venv system-deps-report
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --no-input -v 0
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py demo

serve: venv
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --no-input -v 0
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py qcluster & \
	trap 'kill %1' EXIT; DEBUG=$${DEBUG:-1} $(BIN)/python manage.py runserver 127.0.0.1:8000

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
