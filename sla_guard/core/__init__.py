"""The pure core: rules, calendars, matching, the event replay engine, clocks and follow-ups.

Nothing here reads a database, Redis or the network; everything is tested exhaustively."""
