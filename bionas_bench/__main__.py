import sys

from bionas_bench.cli import main

sys.exit(main())
