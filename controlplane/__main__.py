import sys

from controlplane.cli import main

sys.exit(main(["controlplane", *sys.argv[1:]]))
