"""mpcodec: how neurons go from monosemantic to polysemantic, in JAX."""

__version__ = "0.1.0"
