"""Example data for the feature repository, the demo, tests and benchmarks."""
