"""Faust stream processing: the app built from settings, its topics and its flows of agents."""
