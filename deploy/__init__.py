"""Deploy PHP/Laravel applications over SSH: plans as data, one executor, verified by the pool."""
