"""One module per ``allocflow`` sub-command; each exposes ``register(subparsers)``."""
