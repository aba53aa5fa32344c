"""The engine: configs, the run loop, seeds, checkpoints, sharding, optimizers, losses, errors, I/O, statistics."""
