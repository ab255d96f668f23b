# `make run`: web, worker and scheduler with demo data.  `make test`: the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export FLASK_APP := webapp

.PHONY: run test setup setup-dev assets chromium nginx clean

run: setup assets
	$(PY) -m webapp.devrun

# One pytest process per CPU (at most 4): most tests wait on workers, browsers and servers.
test: setup-dev assets chromium nginx
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist worksteal $(PYTEST_ARGS)

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Firetime needs Python 3.11 or newer.")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.installed

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

# htmx, its SSE extension and the script editor (CodeMirror, bundled by esbuild from
# static/src/editor.js), from package.json into static/vendor (not committed).
assets: static/vendor/.built
static/vendor/.built: package.json package-lock.json static/src/editor.js
	@command -v npm >/dev/null || { echo "npm is needed to build the front-end assets (apt-get install npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	npm run --silent build
	touch $@

# The browser tests drive the system's Chromium.
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "The browser tests need Chromium: sudo apt-get install chromium"; exit 1; fi; }

# The production set-up's test puts nginx in front, with docs/deploy/nginx.conf.
nginx:
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; \
	  else echo "The production set-up's test needs nginx: sudo apt-get install nginx"; exit 1; fi; }

clean:
	rm -rf $(VENV) node_modules static/vendor
