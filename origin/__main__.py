"""``python -m origin --sites DIR [--host H] [--port P]``: run the origin server."""

from origin.server import main

raise SystemExit(main())
