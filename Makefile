# Pointsman: `make demo` and `make test` do everything; both build .venv/ first when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install install-phoenix compiled uncompiled protos test unit lint demo bench clean

install: $(STAMP)

# xds-protos ships an old copy of opentelemetry/proto/* that can overwrite opentelemetry-proto's
# (no InstrumentationScope). The product does not import it (it encodes OTLP itself: a plain
# `pip install .` works, tests/integration/proxy/observability/test_plain_pip_install.py); the tests
# decode with the generated classes, so the dev venv reinstalls opentelemetry-proto afterwards
# (tests/unit/test_dependencies.py checks that Envoy's modules still import beside it).
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --force-reinstall --no-deps \
	  "opentelemetry-proto==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')"
	touch $(STAMP)

# Arize Phoenix, the tracing backend of the end-to-end tests, in its own venv: its pytest plugin
# breaks `-W error` when installed beside the project (tests/conformance/proxy/observability/backends.py).
PHOENIX_STAMP := .venv-phoenix/.installed
install-phoenix: $(PHOENIX_STAMP)

$(PHOENIX_STAMP):
	test -x .venv-phoenix/bin/python || $(PYTHON) -m venv .venv-phoenix
	.venv-phoenix/bin/pip install -q arize-phoenix
	touch $(PHOENIX_STAMP)

# The HTTP/1.1 codec and the header map compiled with mypyc (opt-in; needs gcc and the Python
# headers): -20% instructions per HTTP/1.1 request (docs/benchmarks.md). The .py files stay the
# pure-Python fallback; proxy/codec/__init__.py refuses a compiled module older than its source.
COMPILED := proxy/codec/headers.py proxy/codec/http1.py

compiled: install
	$(BIN)/mypyc $(COMPILED)

uncompiled:
	rm -rf build/ proxy/codec/*.so ./*__mypyc*.so

# Our own API (protos/pointsman/**/*.proto) -> protos/gen/: committed, regenerated here after an
# edit of a .proto (tests/unit/protos/test_generated.py fails while they differ).
PROTOS := $(shell find protos/pointsman -name '*.proto')
protos: install
	$(BIN)/python -m grpc_tools.protoc -I protos --python_out=protos/gen --pyi_out=protos/gen \
	  $(PROTOS)

lint: install
	$(BIN)/ruff check controlplane proxy protos tests examples
	$(BIN)/mypy

test: install lint
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -rs -p no:cacheprovider --durations=25

unit: install
	$(BIN)/python -m pytest -q tests/unit

# `make demo` runs until Ctrl-C; `make demo DURATION=30` runs unattended and checks itself (CI).
demo: install install-phoenix
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python examples/demo/run.py $(if $(DURATION),--duration $(DURATION))

bench: install
	for script in tests/bench/*.py; do PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python $$script || exit 1; done

clean: uncompiled
	rm -rf $(VENV) .venv-phoenix .mypy_cache .ruff_cache .pytest_cache
