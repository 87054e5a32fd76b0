"""Private helpers shared by several stages."""
