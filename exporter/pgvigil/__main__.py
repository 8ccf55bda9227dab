from pgvigil.cli import main

raise SystemExit(main())
