"""The studies, one folder each; a study never imports another."""
