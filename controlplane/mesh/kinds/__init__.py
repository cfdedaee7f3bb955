"""One module per mesh kind: its typed spec (frozen dataclasses) and the parser that builds it
from YAML, refusing every field Pointsman does not implement by its path."""
