"""Tables, statistics across seeds and plots."""
