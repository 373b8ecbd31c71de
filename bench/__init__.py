"""castbridge benchmarks: `uv run python -m bench [--quick] [--only NAME]`; docs/performance.md."""
