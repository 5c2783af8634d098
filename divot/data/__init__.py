"""Video decoding, the clip sampler, transforms, datasets and the synthetic shapes world."""
