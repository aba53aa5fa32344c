"""mpcodec: monosemantic-to-polysemantic neurons, training dynamics and the neural codec, in JAX."""
from setuptools import find_packages, setup

setup(
    name="mpcodec",
    version="0.1.0",
    description="JAX tools to study polysemanticity: mono->poly training, layer dimensionality, SAE + Squeezer codec",
    packages=find_packages(include=["mpcodec", "mpcodec.*"]),
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
    ],
    extras_require={
        # Pretrained models (MiniLM): weights from safetensors files, tokenisation from tokenizer.json.
        "lm": ["safetensors>=0.4", "tokenizers>=0.15"],
        "test": ["pytest>=8", "pytest-timeout>=2.2", "pyflakes>=3.0", "import-linter>=2.17",
                 "safetensors>=0.4", "tokenizers>=0.15"],
        # Side-by-side baselines of the benchmark mains only; never imported by the library.
        "bench": ["torch", "sentence-transformers", "ruptures>=1.1"],
    },
)
