from speckle.cli import main

raise SystemExit(main())
