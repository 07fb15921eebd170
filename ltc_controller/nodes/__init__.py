"""Node classes written once against the transport port (transport/port.py)."""
