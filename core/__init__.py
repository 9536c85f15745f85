"""lamina's daemon core: registry, config, metadata, errors, events, server."""
