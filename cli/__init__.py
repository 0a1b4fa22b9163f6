"""The ``lmloop`` command line: above the flows, outside the library (lmloop -> nothing of cli or flows)."""
