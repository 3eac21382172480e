"""One router per part of the dashboard (see `computility.server.web.PAGE_MODULES`)."""
