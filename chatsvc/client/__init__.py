"""The chatsvc terminal client: ``python -m chatsvc.client HOST``."""
