"""Two-way messaging: replies and opt-out signals from handsets, into HighLevel's inbox."""
