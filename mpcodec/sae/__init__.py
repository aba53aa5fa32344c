"""Top-K / BatchTopK sparse autoencoder, its sparse kernels and the Squeezer: usable on anyone's activations."""
