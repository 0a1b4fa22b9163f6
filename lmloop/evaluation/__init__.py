"""Held-out evaluation: perplexity, bits per byte, samples, and the plots that show them."""
