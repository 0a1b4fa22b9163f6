"""Corpus to model: tokenizer, token cache, packing, the model, the training loop and its mechanics, checkpoints, hardware, LoRA, classifiers."""
