"""The settings page HighLevel shows inside its iframe: sessions, the service, templates, assets."""
