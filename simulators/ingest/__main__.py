"""`python -m simulators.ingest --port N --db FILE [--key PEM ...]` (see `simulators.ingest.cli`).

`egw sim ingest ...` imports this module and calls `main(argv)`.
"""

import sys

from simulators.ingest.cli import add_arguments, main, run

__all__ = ["add_arguments", "main", "run"]

if __name__ == "__main__":
    sys.exit(main())
