"""Component resources of plumber-hosting, one per concern."""
