"""`python -m simulators.ingest --port N --db FILE [--key PEM ...]` (see `simulators.ingest.cli`)."""

import sys

from simulators.ingest.cli import main

sys.exit(main())
