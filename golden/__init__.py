"""septet: golden."""
