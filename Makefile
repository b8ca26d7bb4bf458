# The README's two commands are `make run` and `make test`; both set everything up first.
.PHONY: run test setup bench clean

run:
	bash scripts/run.sh

test:
	bash scripts/test.sh

setup:
	bash scripts/setup.sh

bench: setup
	.venv/bin/python benchmarks/bench_footprint.py

clean:
	rm -rf .venv .pytest_cache build dist *.egg-info
