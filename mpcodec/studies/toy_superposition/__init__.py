"""Toy models of superposition: experiment and report."""
