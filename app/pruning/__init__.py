"""The service keeps its own retention promises (DESIGN §14): the worker deletes what it no
longer needs, in small batches (app/pruning/jobs.py)."""
