"""Datasets: synthetic bars, toy sparse features, IDX images, text."""
