"""Private helpers shared by the contract modules; not part of the public API."""
