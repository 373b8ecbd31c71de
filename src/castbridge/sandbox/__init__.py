"""Faithful local stand-ins for Cast.ph and HighLevel: a product feature and our test bed."""
