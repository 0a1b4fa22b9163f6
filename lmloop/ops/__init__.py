"""Operating lmloop: status, preflight checks, the servers it starts, and the data-parallel worker process."""
