"""Learning: the sequence encoder, its objectives and loss, one training loop for pretraining
and fine-tuning, checkpoints, devices and training processes."""
