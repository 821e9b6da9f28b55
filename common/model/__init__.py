"""(encoder -> model) the networks and the tabular generators built on them."""
