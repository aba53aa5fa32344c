"""Where each use of a source's batch stream starts, in one place.

A source's batch `step` is a pure function of the step, so every use of it draws from its own range of
steps: training reads steps 0, 1, ...; the others start far beyond any training run, so no batch is seen
twice by two uses.
"""

INIT_SAMPLE_START = 10 ** 8         # the init sample (input scale, decoder bias)
EVAL_START = 2 * 10 ** 8            # the held-out evaluation window of the SAE and the Squeezer
RECOVERY_START = 3 * 10 ** 8        # the ground-truth recovery batch (true codes beside the activations)
ANALYSIS_START = 4 * 10 ** 8        # the analyses' held-out window (truth tables, co-activation, atlas)
