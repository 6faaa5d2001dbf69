"""Reading and writing: trajectories, aligned files, topologies."""
