"""Assets, one module per stage of a model's life."""
