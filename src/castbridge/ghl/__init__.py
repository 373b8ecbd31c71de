"""HighLevel: webhook signatures, the API client, token lifecycle and the typed payloads."""
