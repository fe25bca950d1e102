import sys

from logdistill.cli import main

sys.exit(main())
