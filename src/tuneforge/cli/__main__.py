"""`python -m tuneforge.cli ...` (what the tests and benchmarks run)."""

from tuneforge.cli import app

app()
