"""Networks: the dreaming backbone, the registry of named networks, trainable architectures, checkpoints."""
