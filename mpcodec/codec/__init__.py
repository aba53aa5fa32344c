"""The neural codec: sparse autoencoder, Squeezer, steering."""
