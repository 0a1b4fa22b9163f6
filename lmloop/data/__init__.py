"""Raw files to a checked, deduplicated corpus: sources, readers, cleaning, ingestion, near-duplicates, the data gate, splits, durable state."""
