"""The image half: learned codec, image I/O and the registry of shipped weights."""
