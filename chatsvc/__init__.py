"""chatsvc: a self-hosted chat whose server relays messages it cannot read."""

__version__ = "0.1.0"
