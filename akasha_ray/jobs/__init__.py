"""Batch jobs, run with `ray job submit -- python -m akasha_ray.jobs.<name>`."""
