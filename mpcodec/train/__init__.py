"""Training state, losses, make_train(), seed sweeps and curricula."""
