"""Processes and credentials shared by the coordinator and the institutions."""
