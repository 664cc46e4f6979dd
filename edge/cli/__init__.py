"""The command line: `auricle run|classify|devices|record|model ...` and the over-the-air push client.

The top floor: may import every room; nothing imports it but edge/__main__.py."""
