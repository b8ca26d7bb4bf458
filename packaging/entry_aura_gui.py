"""PyInstaller entry script of the windowed executable `aura-gui` (the same `app.gui:main` pip installs)."""

from app.gui import main

raise SystemExit(main())
