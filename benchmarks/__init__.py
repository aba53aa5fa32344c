"""Benchmark mains (`python -m benchmarks.<name>`) and the suite that runs them all (`benchmarks.suite`).

The PyTorch peers they compare against live in `benchmarks.baselines` (the `bench` extra); nothing in
`mpcodec/` or `launch/` imports this package.
"""
