"""Training: config, optimizer and schedules, the task's step, the loop, strategies."""
