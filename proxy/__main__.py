import sys

from controlplane.cli import main

sys.exit(main(["proxy", *sys.argv[1:]]))
