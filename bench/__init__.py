"""plaudit's benchmark suite: `make bench`, or `python -m bench.run --help`.

Every timing is reported as a ratio against a baseline measured in the same run, on the same
data: the rules' bare analyst queries (bench/baseline.sql), the plain generate_series write,
the idle runner's memory. Results are printed and appended to BENCHMARKS.md.
"""
