from launcher._cli import main

raise SystemExit(main())
