"""The training-dynamics study: program, sweep, shard plan, FLOP model, results, report."""
