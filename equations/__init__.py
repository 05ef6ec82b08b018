"""The built-in library of systems, written in the physml language."""
