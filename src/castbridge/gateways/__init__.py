"""SMS gateways behind one provider-neutral interface: Cast.ph now, CastBrick and others next."""
