"""The scheduler: leadership, snapshot, planning, the run log."""
