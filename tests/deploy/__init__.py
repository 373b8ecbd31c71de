"""The container image's commands, run outside Docker, and the image and compose files."""
