"""lmloop: keep a language model learning — ingest, validate, tokenize, train, evaluate, register."""

__version__ = "0.1.0"
