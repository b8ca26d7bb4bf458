from app.gui import main

raise SystemExit(main())
