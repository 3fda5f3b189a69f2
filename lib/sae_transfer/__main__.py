import sys

from sae_transfer.cli import main

sys.exit(main())
