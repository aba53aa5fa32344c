"""The neural-codec study: activation sources, the SAE-then-Squeezer pipeline, report."""
