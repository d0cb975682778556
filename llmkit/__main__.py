import sys

from llmkit.cli.main import main

sys.exit(main())
