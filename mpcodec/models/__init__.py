"""Flax linen modules; apply() returns (output, activations by layer name)."""
