"""castbridge: a HighLevel SMS Conversation Provider that sends through Cast.ph and other gateways."""

__version__ = "0.1.0"
