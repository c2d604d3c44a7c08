"""Benchmark of the offline plan against the SDK floor (`python -m bench.compare`).

A benchmark a person runs (`make bench`), never a timed test: `scenario` writes an oduflow.toml of
N teams x M environments, `floor` registers the same resources with a flat loop under the same
mocks, and `compare` measures both, each measurement in its own process.
"""
