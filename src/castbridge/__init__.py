"""castbridge: a HighLevel SMS Conversation Provider sending through Cast.ph and other gateways."""

__version__ = "0.1.0"
