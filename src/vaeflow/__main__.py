from vaeflow.cli import main

raise SystemExit(main())
