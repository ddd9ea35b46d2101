"""Developer tools: third-party model fetchers and benchmarks (not part of the installed package)."""
