"""``python -m producer.cli``: the `trapline` command without its console script."""

from producer.cli import main

main()
