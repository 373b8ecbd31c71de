"""SMS gateways behind one provider-neutral interface (Cast.ph now; CastBrick, Cellcast, UGSMS later)."""
