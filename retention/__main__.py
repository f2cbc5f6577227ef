import sys

from retention.serving.cli import main

sys.exit(main())
