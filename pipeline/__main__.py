import os
import sys

from pipeline.cli import main

try:
    sys.exit(main())
except BrokenPipeError:  # `python -m pipeline config show | head`: the reader left; no traceback (Python docs' recipe)
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(1)
