"""Training the grid: the sweep over configurations, its split over shards and the FLOP model."""
