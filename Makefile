# Two entry points matter: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The end-to-end matrix's newer dockerds (see `dockerds` below).
DOCKERD_SUITES ?= trixie sid
DOCKERDS_STAMP := build/dockerd/.stamp

.PHONY: run test unit venv clean bench bench-share reliability dockerds
BENCH_STAMP := $(VENV)/.installed-bench

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m plugin serve

# The type check first (pyproject.toml [tool.mypy]: the product's packages), then the suite.
test: $(STAMP) $(DOCKERDS_STAMP)
	$(PY) -m mypy
	$(PY) -m pytest -ra $(PYTEST_ARGS)

unit: $(STAMP)
	$(PY) -m pytest -ra tests/unit

# $(call need,command:package ...), a recipe's first line: the programs it
# runs, each with the Debian package that has it. A missing one stops the
# recipe at once with the apt-get line that installs it.
need = @missing=""; for pair in $(1); do \
	command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair\#*:}"; done; \
	test -z "$$missing" || { echo "make $@ needs:$$missing; install with: apt-get install$$missing" >&2; exit 2; }

# Benchmarks against Docker's bridge driver (as root; see docs/benchmarks.md);
# about 20 minutes. The programs they run, as command:Debian package.
BENCH_TOOLS := dockerd:docker.io busybox:busybox-static iperf3:iperf3 etcd:etcd-server \
	etcdctl:etcd-client conntrack:conntrack
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(call need,$(BENCH_TOOLS))
	$(PY) -m bench $(BENCH_ARGS)

# The plugin's share of a container start, another checkout's server against
# this one's (issue 22), into docs/bench-plugin-share.md: make bench-share OLD=path
bench-share: $(STAMP)
	test -n "$(OLD)" || { echo "make bench-share needs OLD=<another checkout>" >&2; exit 2; }
	$(PY) -m bench.plugin_share $(OLD) .

clean:
	rm -rf $(VENV) build *.egg-info

# The end-to-end matrix: besides Debian 12's own dockerd (20.10), the
# docker.io of newer Debian suites (trixie: 26.1, sid: 28.5 when written),
# unpacked under build/dockerd/<version>/ once; tests/e2e runs every case on
# each. Needs apt-get, dpkg and debian-archive-keyring.
$(DOCKERDS_STAMP): contrib/fetch-dockerd.sh
	for suite in $(DOCKERD_SUITES); do contrib/fetch-dockerd.sh $$suite build/dockerd || exit 1; done
	touch $@

dockerds: $(DOCKERDS_STAMP)

# The managed plugin (see config.json). The rootfs comes from debootstrap, so
# no image is pulled; `docker` is the CLI of the Debian package, matching its
# daemon. DOCKER_HOST selects another daemon.
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
PLUGIN ?= pontoon
PLUGIN_DIR := build/plugin
DOCKER ?= /usr/bin/docker

.PHONY: plugin-rootfs plugin plugin-push

plugin-rootfs:
	$(call need,debootstrap:debootstrap)
	PYTHON=$(PYTHON) contrib/build-rootfs.sh $(PLUGIN_DIR)

plugin: plugin-rootfs
	@# The state mount's source must exist before the plugin starts.
	mkdir -p /var/lib/pontoon
	$(DOCKER) plugin create $(PLUGIN):$(VERSION) $(PLUGIN_DIR)
	$(DOCKER) plugin enable $(PLUGIN):$(VERSION)

plugin-push: plugin-rootfs
	@test -n "$(REGISTRY)" || { echo "usage: make plugin-push REGISTRY=host:port" >&2; exit 1; }
	$(DOCKER) plugin create $(REGISTRY)/$(PLUGIN):$(VERSION) $(PLUGIN_DIR)
	$(DOCKER) plugin push $(REGISTRY)/$(PLUGIN):$(VERSION)
	@# The pushed copy lives on in the registry; locally it was only a vehicle.
	$(DOCKER) plugin rm $(REGISTRY)/$(PLUGIN):$(VERSION)

# Crash, fault, hostile-input and soak tests at full size (10,000 cycles),
# and the cluster fault lab on five fresh seeds;
# writes build/reliability.json and build/reliability.md (see docs/reliability.md).
reliability: $(STAMP)
	$(PY) -m tests.reliability.report
