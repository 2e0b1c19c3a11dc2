"""python -m lumiere_research.sweep SPEC.yaml ...: the same command as lumiere-sweep."""
import sys

from lumiere_research.sweep.cli import main

sys.exit(main())
