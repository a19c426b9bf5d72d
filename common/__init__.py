"""Shared plumbing at the bottom of the import graph: atomic writes, the disk cache, checkpoint
file checks, device and distributed setup, the run log, CLI helpers and what the training loops
share. Imports no other package of the project."""
