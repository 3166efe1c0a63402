"""The pure core: rules, calendars, matching, the event replay engine, clocks, follow-ups and
the plain values reports and the store share (marketing spend).

Nothing here reads a database, Redis or the network; everything is tested exhaustively."""
