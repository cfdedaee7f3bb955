"""Where configuration comes from. The default is files (sources/files.py)."""
