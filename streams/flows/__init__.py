"""One module per flow of agents."""
