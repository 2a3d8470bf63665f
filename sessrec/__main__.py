import sys

from sessrec.cli import main

sys.exit(main())
