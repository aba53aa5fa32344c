"""mpcodec: monosemantic-to-polysemantic neurons, training dynamics and the neural codec, in JAX."""
import os
import re

from setuptools import find_packages, setup


def read_version() -> str:
  """`__version__` of mpcodec/__init__.py, read as text: installing must not import the package (and JAX)."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpcodec", "__init__.py")
  with open(path, encoding="utf-8") as f:
    match = re.search(r"""^__version__ = ["']([^"']+)["']""", f.read(), re.M)
  if match is None:
    raise RuntimeError(f"no __version__ = \"...\" line in {path}")
  return match.group(1)


setup(
    name="mpcodec",
    version=read_version(),
    description="JAX tools to study polysemanticity: mono->poly training, layer dimensionality, SAE + Squeezer codec",
    packages=find_packages(include=["mpcodec", "mpcodec.*"]),
    license="MIT",
    python_requires=">=3.11",
    install_requires=[
        "jax>=0.4.35",
        "flax>=0.10",
        "optax>=0.2.3",
        "orbax-checkpoint>=0.10",
        "numpy>=1.26",
        "scipy>=1.11",
        "matplotlib>=3.8",
        "absl-py>=2.0",
        "ml_collections>=0.1.1",
        "tqdm>=4.66",
        "scikit-learn>=1.3",
        # SAEs are exported in SAELens' format (weights in a safetensors file) by every codec run.
        "safetensors>=0.4",
    ],
    extras_require={
        # Pretrained models (MiniLM): tokenisation from tokenizer.json (weights are safetensors files).
        "lm": ["tokenizers>=0.15", "gguf>=0.10"],
        "test": ["pytest>=8", "pytest-timeout>=2.2", "pytest-xdist>=3.5", "pyflakes>=3.0", "import-linter>=2.17",
                 "tokenizers>=0.15", "gguf>=0.10", "pdoc>=14"],
        # Side-by-side baselines of the benchmark mains only; never imported by the library.
        "bench": ["torch", "sentence-transformers", "ruptures>=1.1"],
    },
)
