"""The recipe: what a training config may say (its sections, units and ranges), reading one, and ``extends``.

The ground floor: may import edge's core (features, schema) only, nothing else of training."""
