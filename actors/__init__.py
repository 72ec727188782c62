"""Ray actors: each a thin owner of one resource from `akasha_ray`."""
