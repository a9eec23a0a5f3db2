"""pcmecl."""
