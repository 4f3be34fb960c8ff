# container-manager: the one entry point.
#
#   make demo    the main job: the whole loop from the real stack in the local cloud twin
#   make check   the quick tier, while you work: fmt, clippy, unit tests, template and shim
#                tests, one twin story (at most 8 minutes on a warm 2-core machine)
#   make test    installs what is missing, then lint + every test (what CI runs)
#   make bench   benchmark report
#   make deb / make rpm / make package-check
#   make deploy PARAMS=cloud/examples/valheim.json [REGION=eu-north-1]   to real AWS (docs/cloud.md)
#   make destroy PARAMS=...                                               keeps the world's data
#   make world-import PARAMS=... FROM=./my-world  |  make world-export PARAMS=... [TO=world.tar.gz]
#   make world-restore PARAMS=... [DATE=2026-12-02]  |  make shell PARAMS=...   (docs/cloud.md)
#   make status|wake|sleep PARAMS=...    the running server (all of these are cloud/cm VERB)
#
# CARGO_TARGET_DIR is kept outside the clone so a fresh clone reuses compiled dependencies.
export CARGO_TARGET_DIR ?= /var/cache/container-manager/target
export CARGO_TERM_COLOR ?= never
PY := tests/.venv/bin/python
PYTEST := $(PY) -m pytest -p no:cacheprovider
PHASES := tests/harness/phases.sh
# The Python checks of the template, the deploy and world commands and the shim (no twin boot).
PYTHON_TESTS := tests/cloud tests/shim tests/twin/test_twin_parts.py
# On 2 pytest-xdist workers: each has its own moto, and each deploy-command test its own shim;
# most of the time is the deploy command's subprocesses waiting on them.
export PYTHON_WORKERS ?= 2
# The end-to-end stories: the agent-level ones (tests/e2e) and the cloud twin's. They run side by
# side on STORY_WORKERS pytest-xdist workers (tests/harness/stories.sh; each twin has a slot of
# its own), the slowest files first so that the last one to start is short. 3 workers on 2 cores:
# the stories mostly wait on their timers (figures in tests/twin/README.md).
STORY_FILES := $(addprefix tests/twin/test_twin_,world.py stories.py deploy.py never_started.py wakes.py operator.py many.py) tests/e2e \
	$(addprefix tests/twin/test_twin_,warm_pool.py discord.py dead_agent.py isolation.py smoke.py)
export STORY_WORKERS ?= 3

.PHONY: setup setup-demo build lint check test test-rust test-python test-e2e demo bench deb rpm package-check deploy destroy \
	world-import world-export world-restore shell status wake sleep logs clean

setup:
	tests/harness/setup.sh

# Only what the demo uses (no packaging tools).
setup-demo:
	tests/harness/setup.sh demo

build:
	cargo build --workspace --all-targets

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	python3 tools/structure.py

test-python: setup
	$(PYTEST) $(PYTHON_TESTS) -q -n $(PYTHON_WORKERS)

# The end-to-end stories run the real binary, so it is built first: the agent-level stories
# (tests/e2e), then the whole loop from the real stack in the cloud twin (tests/twin).
test-e2e: setup
	cargo test --workspace --lib --tests --no-run
	tests/harness/stories.sh $(STORY_FILES)

test-rust: setup
	cargo test --workspace --no-fail-fast --lib --tests -- --test-threads=2

# The quick tier. `cargo test --no-run` with the CLI tests also builds the agent binary the twin
# boots (target/debug), with the same features as every other debug build here, so nothing is
# compiled twice.
check:
	@$(PHASES) --stop-on-fail=setup,build \
	  setup '$(MAKE) --no-print-directory setup-demo' \
	  build 'cargo test -p container-manager-agent --lib --test cli --no-run' \
	  lint '$(MAKE) --no-print-directory lint' \
	  rust-unit 'cargo test -p container-manager-agent --lib --test cli -- --test-threads=2' \
	  python '$(PYTEST) $(PYTHON_TESTS) -q -n $(PYTHON_WORKERS)' \
	  twin-smoke '$(PYTEST) tests/twin/test_twin_smoke.py -v'

# Everything, one phase after another, with a table of their wall times at the end. One debug
# build serves the stories and the Rust suites (`cargo test --no-run` builds the agent binary
# too). The stories run side by side (STORY_WORKERS); the release build for the packages runs
# niced in the background while they wait on their timers. The Rust suites run last, because
# tests/container.rs restarts dockerd.
test:
	@$(PHASES) --stop-on-fail=setup,build \
	  setup '$(MAKE) --no-print-directory setup' \
	  build 'cargo test --workspace --lib --tests --no-run' \
	  lint '$(MAKE) --no-print-directory lint' \
	  python '$(PYTEST) $(PYTHON_TESTS) -q -n $(PYTHON_WORKERS)' \
	  stories '$(PHASES) --background release "nice -n 19 cargo build --release -p container-manager-agent" && tests/harness/stories.sh $(STORY_FILES)' \
	  packaging '$(PHASES) --wait release; packaging/check.sh' \
	  rust '$(MAKE) --no-print-directory test-rust'

# The agent binary the twin boots, built with the same features as the test builds (a test
# target needs the dev-dependencies), so that the demo, check and test share one debug build.
demo: setup-demo
	cargo test -p container-manager-agent --test cli --no-run
	tests/.venv/bin/python tests/demo/demo.py

# The agent is built on its own, with the features it ships with (as `make deb` builds it): built
# in one invocation with the bench programs, it would get their dev-dependencies' features too
# (tokio's test-util among them), 0.6 MB more binary and 0.7 MiB more peak RSS.
bench: setup
	cargo build --release -p container-manager-agent --bin container-manager-agent
	cargo build --release -p container-manager-agent --example bench_udp_flood --example bench_naive_counter
	tests/.venv/bin/python tests/bench/bench.py

# Packages (docs/packaging.md): one release build feeds both; they land in dist/.
# dist/ is made first: on a fresh clone, cargo generate-rpm takes a missing dist/ for a file
# ("Is a directory (os error 21)").
deb:
	cargo build --release -p container-manager-agent
	mkdir -p dist
	cargo deb -p container-manager-agent --no-build --output dist/

rpm:
	cargo build --release -p container-manager-agent
	mkdir -p dist
	cargo generate-rpm -p agent --output dist/

# Builds both packages and checks them, the unit, the installer and the AMI template (root).
package-check: setup
	packaging/check.sh

# The one deploy command: builds the .rpm, deploys the stack (and the wake-up chain outside
# us-east-1), puts the package into the stack's private bucket. Your AWS CLI's credentials.
deploy:
	@test -n "$(PARAMS)" || { echo "usage: make deploy PARAMS=cloud/examples/valheim.json [REGION=...]" >&2; exit 2; }
	cloud/cm deploy $(PARAMS) $(if $(REGION),--region $(REGION))

destroy:
	@test -n "$(PARAMS)" || { echo "usage: make destroy PARAMS=cloud/examples/valheim.json [REGION=...]" >&2; exit 2; }
	cloud/cm destroy $(PARAMS) $(if $(REGION),--region $(REGION))

# The operator's hands on the world (docs/cloud.md, "Your world's files"): while the server
# sleeps, each runs as a maintenance boot with no game, and the server goes back to zero.
world-import:
	@test -n "$(PARAMS)" -a -n "$(FROM)" || { echo "usage: make world-import PARAMS=my-valheim.json FROM=./my-world (a folder or a .tar.gz)" >&2; exit 2; }
	cloud/cm import $(PARAMS) $(FROM) $(if $(REGION),--region $(REGION))

world-export:
	@test -n "$(PARAMS)" || { echo "usage: make world-export PARAMS=my-valheim.json [TO=world.tar.gz]" >&2; exit 2; }
	cloud/cm export $(PARAMS) $(TO) $(if $(REGION),--region $(REGION))

world-restore:
	@test -n "$(PARAMS)" || { echo "usage: make world-restore PARAMS=my-valheim.json [DATE=YYYY-MM-DD]" >&2; exit 2; }
	cloud/cm restore $(PARAMS) $(if $(DATE),--date $(DATE)) $(if $(REGION),--region $(REGION))

shell:
	@test -n "$(PARAMS)" || { echo "usage: make shell PARAMS=my-valheim.json" >&2; exit 2; }
	cloud/cm shell $(PARAMS) $(if $(REGION),--region $(REGION))

# The operator's command for the running server (cloud/cm; `cloud/cm --help`): status reads
# only; wake starts it; sleep stops it through the save path, refused while players are on.
status wake logs:
	@test -n "$(PARAMS)" || { echo "usage: make $@ PARAMS=my-valheim.json" >&2; exit 2; }
	cloud/cm $@ $(PARAMS) $(if $(REGION),--region $(REGION))

sleep:
	@test -n "$(PARAMS)" || { echo "usage: make sleep PARAMS=my-valheim.json [FORCE=1]" >&2; exit 2; }
	cloud/cm sleep $(PARAMS) $(if $(FORCE),--force) $(if $(REGION),--region $(REGION))

clean:
	cargo clean
