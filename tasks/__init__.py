"""Prefect tasks: thin wrappers over ``lmloop.stages`` returning paths, ids and small dicts."""
