"""`make bench`: Pontoon measured against Docker's own bridge driver and
against a bare Flask + gunicorn floor, written to docs/benchmarks.md."""
