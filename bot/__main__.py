"""`python -m bot` is `seedance-bot`."""

from bot.cli import main

raise SystemExit(main())
