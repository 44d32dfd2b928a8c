"""Operator features without a command line: dead letters, the live view, generated docs."""
