import os
import sys

# Shared helpers (tests/helpers.py) are imported as a top-level module.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
