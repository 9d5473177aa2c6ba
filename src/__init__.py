"""homunculus: grow small language models from scratch, end to end and reproducibly."""
