"""Training: distributed setup, checkpoints, schedules, losses and the iteration-based trainer."""
