"""mpcodec: how neurons go from monosemantic to polysemantic, in JAX.

The public API: `mpcodec.metrics` (metrics on arrays), `mpcodec.sae` (sparse autoencoders on anyone's
activations) and `mpcodec.checkpoints` (any run's parameters, config and activations from its workdir).
"""

# The one place the version is written; setup.py reads it from this file without importing the package.
__version__ = "0.2.0"
