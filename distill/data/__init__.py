"""Training data: sequences from real-format datasets, unlabeled video and the synthetic world, and the pair
sampler that turns them into template/search crops with the runtime's own crop."""
