"""Root of the test tree: every run, whatever subset it selects, ends with
the check that nothing of ours outlives it (see tests/leaks.py)."""

pytest_plugins = ["tests.leaks"]
