"""Prefect flows: they only wire tasks together."""

from lmloop.core.settings import freeze_heap_at_exit

# A deployment's flow runs start in processes of their own (Prefect's runner or worker imports this package
# first): they exit without walking the heap too.
freeze_heap_at_exit()
