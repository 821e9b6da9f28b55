"""(encoder -> model) the networks and the tabular models built on them; trained by common.dp.trainer."""
