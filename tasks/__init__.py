"""Prefect tasks: thin wrappers over the library (``lmloop.<room>``) returning paths, ids and small dicts."""
