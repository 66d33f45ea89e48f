import sys

from cometa.cli import main

sys.exit(main())
