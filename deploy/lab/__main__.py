import sys

from .hosts import main

sys.exit(main())
