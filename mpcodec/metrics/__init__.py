"""Pure, jittable metric functions, vmappable over a leading seed axis."""
