"""Training loops: the refiner's self-supervised pre-training on real video."""
