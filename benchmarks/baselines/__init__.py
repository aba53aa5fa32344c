"""The PyTorch tools a researcher would otherwise run, timed beside mpcodec by the benchmark mains.

PyTorch and sentence-transformers come from the `bench` extra (`pip install -e '.[bench]'`); each module
imports them inside its functions, so importing this package needs neither.
"""
