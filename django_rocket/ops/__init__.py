"""What the management commands and the admin share: runs, overviews, pruning, explain, export."""
