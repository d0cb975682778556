"""L3: training. Losses, optimizer, schedule, the one loop, checkpoints, torchrun/DDP."""
