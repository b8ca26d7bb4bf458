"""PyInstaller entry script of the console executable `aura` (the same `app.cli:main` pip installs)."""

from app.cli import main

raise SystemExit(main())
